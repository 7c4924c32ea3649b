# Semantic FPN + CAFormer-S18, ADE20K 40K: the PoolFormer paper's recipe
# (inherited from PoolFormer-S12's config; only the backbone differs: same
# channels). No published result exists for this pair.
_base_ = './fpn_poolformer_s12.py'

model = dict(
    backbone=dict(
        type='CAFormer',
        arch='s18',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/timm/caformer_s18.sail_in1k/'
            'resolve/main/model.safetensors')))
