# UperNet + ConvFormer-S18, ADE20K 160K: 48.6 mIoU reported (54M, 925G MACs).
# That figure (54M parameters, 925 GMACs at 512x2048) is as jjwang8/PolyNeXt's
# segmentation/README.md lists it for the MetaFormer baselines' setup; neither
# sail-sg/metaformer (no segmentation code) nor the paper text we could read
# gives the recipe, so this is mmseg's ConvNeXt-T UperNet 160K recipe
# (convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py) with ConvFormer-S18,
# the ConvNeXt of its size: AdamW lr 1e-4, weight decay 0.05 (none on norms,
# biases and scales), stage-wise lr decay 0.9, drop path 0.4, 1500-iteration
# warm-up then linear decay, 8 GPUs x 2 images, fp16 (here: train with
# --amp), sliding-window test.
_base_ = [
    # UperNet's heads as in upernet_convnext.py, whose checkpoint_file (a
    # ConvNeXt-B URL) a dumped config would otherwise carry
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,  # the base's ResNet weights
    backbone=dict(
        _delete_=True,
        type='ConvFormer',
        arch='s18',
        drop_path_rate=0.4,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/timm/'
            'convformer_s18.sail_in1k/resolve/main/model.safetensors')),
    decode_head=dict(in_channels=[64, 128, 320, 512], num_classes=150),
    auxiliary_head=dict(in_channels=320, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# mmseg's LearningRateDecayOptimizerConstructor knows ConvNeXt's and BEiT's
# parameter names only; ours applies its rules to this backbone.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    constructor='DepthDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise',
                       num_layers=6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500,
         end=160000),
]
# 8 GPUs x 2 images = 16.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
# Stop, naming the iteration, if the loss stops being finite (fp16 loss
# scaling: log the skipped step instead), or after iteration 1 if a backbone
# parameter got no gradient.
custom_hooks = [dict(type='FiniteLossHook'), dict(type='PyramidCheckHook')]
