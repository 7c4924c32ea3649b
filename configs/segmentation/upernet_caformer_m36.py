# UperNet + CAFormer-M36, ADE20K 160K (no published result).
# The settings of ConvNeXt-S, the ConvNeXt nearest in size: drop path
# 0.3, num_layers 12; otherwise as upernet_caformer_s18.py.
_base_ = './upernet_caformer_s18.py'
model = dict(
    backbone=dict(
        arch='m36',
        drop_path_rate=0.3,
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/caformer_m36.sail_in1k'
            '/resolve/main/model.safetensors')),
    decode_head=dict(in_channels=[96, 192, 384, 576]),
    auxiliary_head=dict(in_channels=384))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
