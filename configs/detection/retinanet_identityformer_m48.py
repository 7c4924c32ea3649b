# RetinaNet + IdentityFormer-M48, COCO 1x (no published result).
_base_ = './retinanet_identityformer_s12.py'
model = dict(
    backbone=dict(
        arch='m48',
        init_cfg=dict(
            checkpoint='https://huggingface.co/sail/dl/resolve/main/'
            'identityformer/identityformer_m48.pth')),
    neck=dict(in_channels=[192, 384, 768]))
