# RetinaNet + PoolFormerV2-M48, COCO 1x (no published result).
_base_ = './retinanet_poolformerv2_s12.py'
model = dict(
    backbone=dict(
        arch='m48',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/poolformerv2_m48.sail_in1k'
            '/resolve/main/model.safetensors')),
    neck=dict(in_channels=[192, 384, 768]))
