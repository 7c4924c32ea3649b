# RetinaNet + IdentityFormer-M36, COCO 1x (no published result).
_base_ = './retinanet_identityformer_s12.py'
model = dict(
    backbone=dict(
        arch='m36',
        init_cfg=dict(
            checkpoint='https://huggingface.co/sail/dl/resolve/main/'
            'identityformer/identityformer_m36.pth')),
    neck=dict(in_channels=[192, 384, 768]))
