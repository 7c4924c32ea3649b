# Mask R-CNN + PoolFormerV2-S36, COCO 1x (no published result).
_base_ = './mask_rcnn_poolformerv2_s12.py'
model = dict(
    backbone=dict(
        arch='s36',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/poolformerv2_s36.sail_in1k'
            '/resolve/main/model.safetensors')))
