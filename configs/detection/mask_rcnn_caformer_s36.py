# Mask R-CNN + CAFormer-S36, COCO 1x (no published result).
_base_ = './mask_rcnn_caformer_s18.py'
model = dict(backbone=dict(
    arch='s36',
    init_cfg=dict(
        checkpoint='https://huggingface.co/timm/caformer_s36.sail_in1k'
        '/resolve/main/model.safetensors')))
