# RetinaNet + PoolFormer-S36, COCO 1x (paper: 39.5 box AP).
_base_ = './retinanet_poolformer_s12.py'
model = dict(backbone=dict(
    arch='s36',
    init_cfg=dict(checkpoint='https://github.com/sail-sg/poolformer/releases/'
                  'download/v1.0/poolformer_s36.pth.tar')))
