# Semantic FPN + PoolFormerV2-S24, ADE20K 40K (no published result).
_base_ = './fpn_poolformerv2_s12.py'
model = dict(backbone=dict(
    arch='s24',
    init_cfg=dict(
        checkpoint='https://huggingface.co/timm/poolformerv2_s24.sail_in1k'
        '/resolve/main/model.safetensors')))
