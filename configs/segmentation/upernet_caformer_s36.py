# UperNet + CAFormer-S36, ADE20K 160K (no published result).
# The settings of ConvNeXt-S, the ConvNeXt nearest in size: drop path
# 0.3, num_layers 12; otherwise as upernet_caformer_s18.py.
_base_ = './upernet_caformer_s18.py'
model = dict(
    backbone=dict(
        arch='s36',
        drop_path_rate=0.3,
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/caformer_s36.sail_in1k'
            '/resolve/main/model.safetensors')),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
