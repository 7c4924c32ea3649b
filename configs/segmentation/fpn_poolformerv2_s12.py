# Semantic FPN + PoolFormerV2-S12, ADE20K 40K: the PoolFormer paper's recipe
# (inherited from PoolFormer-S12's config; only the backbone differs: same
# channels). No published result exists for this pair.
_base_ = './fpn_poolformer_s12.py'

model = dict(
    backbone=dict(
        type='PoolFormerV2',
        arch='s12',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/timm/'
            'poolformerv2_s12.sail_in1k/resolve/main/model.safetensors')))
