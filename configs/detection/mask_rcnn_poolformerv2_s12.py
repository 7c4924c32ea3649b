# Mask R-CNN + PoolFormerV2-S12, COCO 1x: the PoolFormer paper's recipe
# (inherited from PoolFormer-S12's config; only the backbone differs: same
# channels). No published result exists for this pair.
_base_ = './mask_rcnn_poolformer_s12.py'

model = dict(
    backbone=dict(
        type='PoolFormerV2',
        arch='s12',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/timm/'
            'poolformerv2_s12.sail_in1k/resolve/main/model.safetensors')))
