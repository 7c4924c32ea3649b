# Semantic FPN + IdentityFormer-S36, ADE20K 40K (no published result).
_base_ = './fpn_identityformer_s12.py'
model = dict(
    backbone=dict(
        arch='s36',
        init_cfg=dict(
            checkpoint='https://huggingface.co/sail/dl/resolve/main/'
            'identityformer/identityformer_s36.pth')))
