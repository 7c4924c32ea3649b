# Semantic FPN + PoolFormer-S12, ADE20K, 40K iterations at batch 32
# (paper: 37.1 mIoU; 37.2 in the authors' release).
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='PoolFormer',
        arch='s12',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/sail-sg/poolformer/releases/'
            'download/v1.0/poolformer_s12.pth.tar')),
    # FPN's default init is Xavier, as the paper states; the head keeps
    # mmseg's init, as the authors' release did.
    neck=dict(in_channels=[64, 128, 320, 512]),
    decode_head=dict(num_classes=150))

# Test at short side 512. The authors' test pipeline then stretched the image
# to the next multiple of 32 ("AlignResize"), which is the default here; for
# plain mmseg resizing, drop the ResizeToMultiple line.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
data_root = 'data/ade/ADEChallengeData2016'
# 8 GPUs x 4 images = 32.
train_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root))
val_dataloader = dict(
    batch_size=1, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000,
         by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000))
# Stop, naming the iteration, if the loss stops being finite (fp16 loss
# scaling: log the skipped step instead); stop after iteration 1 if the
# pyramid's strides and the head's disagree or a backbone parameter gets no
# gradient, naming them.
custom_hooks = [dict(type='FiniteLossHook'), dict(type='PyramidCheckHook')]
