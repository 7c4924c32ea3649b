# RetinaNet + PoolFormer-S12, COCO 1x (paper: 36.2 box AP).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    # tools/test.py --tta: mmdet's RetinaNet test-time augmentation, boxes
    # of 3 scales (1333x800 and its 0.5 and 1.5) x flip merged by NMS
    'mmdet::retinanet/retinanet_tta.py',
]
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='PoolFormer',
        arch='s12',
        # RetinaNet reads strides 8-32 only: the stride-4 norm is not built,
        # so no parameter lacks a gradient under DDP.
        out_indices=(1, 2, 3),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/sail-sg/poolformer/releases/'
            'download/v1.0/poolformer_s12.pth.tar')),
    # P3-P5 from the backbone, P6-P7 by extra convs on the input (C5).
    # FPN's own default init is Xavier (uniform), as the paper states; the
    # heads keep mmdet's init, as the authors' release did.
    neck=dict(in_channels=[128, 320, 512], start_level=0,
              add_extra_convs='on_input', num_outs=5))

data_root = 'data/coco/'
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))
# 8 GPUs x 2 images; --auto-scale-lr rescales lr for other totals.
auto_scale_lr = dict(enable=False, base_batch_size=16)
# Stop, naming the iteration, if the loss stops being finite (fp16 loss
# scaling: log the skipped step instead); stop after iteration 1 if the
# pyramid's strides and the head's disagree or a backbone parameter gets no
# gradient, naming them.
custom_hooks = [dict(type='FiniteLossHook'), dict(type='PyramidCheckHook')]
