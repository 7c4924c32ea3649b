# Semantic FPN + PoolFormer-S36, ADE20K 40K (paper: 42.0 mIoU).
_base_ = './fpn_poolformer_s12.py'
model = dict(backbone=dict(
    arch='s36',
    init_cfg=dict(checkpoint='https://github.com/sail-sg/poolformer/releases/'
                  'download/v1.0/poolformer_s36.pth.tar')))
