# The demo's segmentor: the real Semantic FPN + PoolFormer-S12 config, trained
# from scratch on the synthetic shapes (mmpoolformer/datasets/shapes.py)
# written in ADE20K's file layout, with classes of their own: background,
# circle, square and triangle (mmpoolformer.datasets.SEG_CLASSES and
# SEG_PALETTE). Only data, classes, image size and schedule differ.
_base_ = '../segmentation/fpn_poolformer_s12.py'

data_root = 'data/shapes/ade/ADEChallengeData2016'
metainfo = dict(classes=('background', 'circle', 'square', 'triangle'),
                palette=[(128, 128, 128), (220, 20, 60), (0, 130, 230),
                         (20, 200, 60)])
# mmseg's plain dataset: ADE20KDataset only takes subsets of ADE20K's names
shapes_dataset = dict(type='BaseSegDataset', metainfo=metainfo,
                      img_suffix='.jpg', seg_map_suffix='.png',
                      reduce_zero_label=True)
crop_size = (96, 96)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None),  # no download: from scratch
    decode_head=dict(num_classes=4))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    # mild scale jitter: crops must keep shapes whole, since a shape's
    # class is its outline
    dict(type='RandomResize', scale=(96, 96), ratio_range=(0.75, 1.25),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(192, 96), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(shapes_dataset, data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(shapes_dataset, data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 800
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=30),
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=30, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=200)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=200, max_keep_ckpts=2))
randomness = dict(seed=0, deterministic=True)
