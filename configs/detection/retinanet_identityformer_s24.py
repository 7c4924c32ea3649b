# RetinaNet + IdentityFormer-S24, COCO 1x (no published result).
_base_ = './retinanet_identityformer_s12.py'
model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(
            checkpoint='https://huggingface.co/sail/dl/resolve/main/'
            'identityformer/identityformer_s24.pth')))
