# RetinaNet + IdentityFormer-S36, COCO 1x (no published result).
_base_ = './retinanet_identityformer_s12.py'
model = dict(
    backbone=dict(
        arch='s36',
        init_cfg=dict(
            checkpoint='https://huggingface.co/sail/dl/resolve/main/'
            'identityformer/identityformer_s36.pth')))
