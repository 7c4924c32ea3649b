# Semantic FPN + PoolFormer-M48, ADE20K 40K (paper: 42.7 mIoU).
_base_ = './fpn_poolformer_s12.py'
model = dict(
    backbone=dict(
        arch='m48',
        init_cfg=dict(
            checkpoint='https://github.com/sail-sg/poolformer/releases/'
            'download/v1.0/poolformer_m48.pth.tar')),
    neck=dict(in_channels=[96, 192, 384, 768]))
