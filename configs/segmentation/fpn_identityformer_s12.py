# Semantic FPN + IdentityFormer-S12, ADE20K 40K (no published result).
# The PoolFormer paper's recipe, inherited from PoolFormer-S12's config; only
# the backbone differs (same channels). IdentityFormer (identity token mixer)
# is the MetaFormer baselines' lower bound: against it, a config shows what
# a token mixer is worth. timm's hub has no IdentityFormer weights; these are
# the authors' (sail-sg/metaformer's README).
_base_ = './fpn_poolformer_s12.py'

model = dict(
    backbone=dict(
        type='IdentityFormer',
        arch='s12',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/sail/dl/resolve/main/'
            'identityformer/identityformer_s12.pth')))
