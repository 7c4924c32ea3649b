# Semantic FPN + PoolFormerV2-S36, ADE20K 40K (no published result).
_base_ = './fpn_poolformerv2_s12.py'
model = dict(
    backbone=dict(
        arch='s36',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/poolformerv2_s36.sail_in1k'
            '/resolve/main/model.safetensors')))
