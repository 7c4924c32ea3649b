# UperNet + ConvFormer-B36, ADE20K 160K (no published result).
# The settings of ConvNeXt-B, the ConvNeXt nearest in size: drop path
# 0.4, num_layers 12; otherwise as upernet_convformer_s18.py.
_base_ = './upernet_convformer_s18.py'
model = dict(
    backbone=dict(
        arch='b36',
        drop_path_rate=0.4,
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/convformer_b36.sail_in1k'
            '/resolve/main/model.safetensors')),
    decode_head=dict(in_channels=[128, 256, 512, 768]),
    auxiliary_head=dict(in_channels=512))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
