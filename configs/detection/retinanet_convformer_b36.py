# RetinaNet + ConvFormer-B36, COCO 1x (no published result).
_base_ = './retinanet_convformer_s18.py'
model = dict(
    backbone=dict(
        arch='b36',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/convformer_b36.sail_in1k'
            '/resolve/main/model.safetensors')),
    neck=dict(in_channels=[256, 512, 768]))
