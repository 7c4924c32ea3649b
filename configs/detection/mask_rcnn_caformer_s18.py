# Mask R-CNN + CAFormer-S18, COCO 1x: the PoolFormer paper's recipe
# (inherited from PoolFormer-S12's config; only the backbone differs: same
# channels). No published result exists for this pair.
_base_ = './mask_rcnn_poolformer_s12.py'

model = dict(
    backbone=dict(
        type='CAFormer',
        arch='s18',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/timm/caformer_s18.sail_in1k/'
            'resolve/main/model.safetensors')))
