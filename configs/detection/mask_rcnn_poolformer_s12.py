# Mask R-CNN + PoolFormer-S12, COCO 1x (paper: 37.3 box AP / 34.6 mask AP).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
# No test-time augmentation: mmdet 3.3 has none for instance segmentation
# (its DetTTAModel merges boxes only), and tools/test.py --tta says so.
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='PoolFormer',
        arch='s12',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/sail-sg/poolformer/releases/'
            'download/v1.0/poolformer_s12.pth.tar')),
    # FPN's default init is Xavier (uniform), as the paper states; RPN and
    # RoI heads keep mmdet's init, as the authors' release did.
    neck=dict(in_channels=[64, 128, 320, 512]))

data_root = 'data/coco/'
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
auto_scale_lr = dict(enable=False, base_batch_size=16)
# Stop, naming the iteration, if the loss stops being finite (fp16 loss
# scaling: log the skipped step instead); stop after iteration 1 if the
# pyramid's strides and the head's disagree or a backbone parameter gets no
# gradient, naming them.
custom_hooks = [dict(type='FiniteLossHook'), dict(type='PyramidCheckHook')]
