# Semantic FPN + IdentityFormer-S24, ADE20K 40K (no published result).
_base_ = './fpn_identityformer_s12.py'
model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(
            checkpoint='https://huggingface.co/sail/dl/resolve/main/'
            'identityformer/identityformer_s24.pth')))
