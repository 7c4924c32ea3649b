# Mask R-CNN + CAFormer-M36, COCO 1x (no published result).
_base_ = './mask_rcnn_caformer_s18.py'
model = dict(
    backbone=dict(
        arch='m36',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/caformer_m36.sail_in1k'
            '/resolve/main/model.safetensors')),
    neck=dict(in_channels=[96, 192, 384, 576]))
