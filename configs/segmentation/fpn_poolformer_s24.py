# Semantic FPN + PoolFormer-S24, ADE20K 40K (paper: 40.3 mIoU).
_base_ = './fpn_poolformer_s12.py'
model = dict(backbone=dict(
    arch='s24',
    init_cfg=dict(checkpoint='https://github.com/sail-sg/poolformer/releases/'
                  'download/v1.0/poolformer_s24.pth.tar')))
