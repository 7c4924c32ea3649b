# Semantic FPN + PoolFormerV2-M48, ADE20K 40K (no published result).
_base_ = './fpn_poolformerv2_s12.py'
model = dict(
    backbone=dict(
        arch='m48',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/poolformerv2_m48.sail_in1k'
            '/resolve/main/model.safetensors')),
    neck=dict(in_channels=[96, 192, 384, 768]))
