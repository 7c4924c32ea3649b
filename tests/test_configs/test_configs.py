"""Every config builds its model, runs loss and predict, and states the
paper's settings (Yu et al., "MetaFormer Is Actually What You Need for
Vision", CVPR 2022: section 4.2, detection and segmentation). The MetaFormer
baselines' configs use the same recipes with their ImageNet weights."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

import mmpoolformer
from helpers.configs import CONFIGS, build, train_and_predict
from helpers.tiers import per_config
from mmpoolformer.testing.heads import seg_batch

ROOT = str(CONFIGS)
ALL_DET = sorted(glob.glob(osp.join(ROOT, 'detection', '*.py')))
# the UperNet configs are tested in test_upernet_and_sizes.py
ALL_SEG = sorted(glob.glob(osp.join(ROOT, 'segmentation', 'fpn_*.py')))
# The larger sizes of the MetaFormer baselines and IdentityFormer are
# one-line deltas of their family's first config; test_upernet_and_sizes.py
# checks them against it and runs them at a tiny input.
LATER_SIZES = ('convformer_m36', 'convformer_b36', 'caformer_m36',
               'caformer_b36', 'poolformerv2_s36', 'poolformerv2_m36',
               'poolformerv2_m48', 'identityformer_')


def later_size(path):
    return any(k in osp.basename(path) for k in LATER_SIZES)


DET = [p for p in ALL_DET if not later_size(p)]
SEG = [p for p in ALL_SEG if not later_size(p)]
URL = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/' \
    'poolformer_{}.pth.tar'
# timm's hub files of the MetaFormer baselines' ImageNet-1K weights
HUB = 'https://huggingface.co/timm/{}_{}.sail_in1k/resolve/main/' \
    'model.safetensors'
# timm's hub has no IdentityFormer: the authors' files
SAIL = 'https://huggingface.co/sail/dl/resolve/main/{}/{}_{}.pth'
TYPES = dict(poolformer='PoolFormer', poolformerv2='PoolFormerV2',
             convformer='ConvFormer', caformer='CAFormer',
             identityformer='IdentityFormer')


def arch_of(path):
    return osp.splitext(path)[0].rsplit('_', 1)[1]


def backbone_of(path):
    """The type and pretrained URL a config's backbone must have."""
    family = osp.splitext(path)[0].rsplit('_', 2)[1]
    arch = arch_of(path)
    if family == 'poolformer':
        url = URL.format(arch)
    elif family == 'identityformer':
        url = SAIL.format(family, family, arch)
    else:
        url = HUB.format(family, arch)
    return TYPES[family], url


def dims_of(path):
    """The channels of a config's backbone, from its class's archs."""
    kind = backbone_of(path)[0]
    return list(getattr(mmpoolformer, kind).arch_settings[arch_of(path)]
                ['dims'])


def test_config_sets():
    names = [osp.basename(p) for p in ALL_DET + ALL_SEG]
    sizes = dict(poolformer=('s12', 's24', 's36'),
                 poolformerv2=('s12', 's24', 's36', 'm36', 'm48'),
                 identityformer=('s12', 's24', 's36', 'm36', 'm48'),
                 convformer=('s18', 's36', 'm36', 'b36'),
                 caformer=('s18', 's36', 'm36', 'b36'))
    det = sorted(f'{kind}_{family}_{arch}.py'
                 for kind in ('retinanet', 'mask_rcnn')
                 for family, archs in sizes.items() for arch in archs)
    sizes['poolformer'] += ('m36', 'm48')
    seg = sorted(f'fpn_{family}_{arch}.py'
                 for family, archs in sizes.items() for arch in archs)
    assert names == det + seg
    assert len(names) == 2 * 21 + 23
    assert len(DET + SEG) == 2 * 9 + 11


def check_backbone(cfg, path, out_indices):
    """The config's backbone: its file name's family and size, their
    ImageNet weights, ``out_indices``."""
    bb = cfg.model.backbone
    kind, url = backbone_of(path)
    assert (bb.type, bb.arch) == (kind, arch_of(path))
    assert bb.init_cfg == dict(type='Pretrained', checkpoint=url)
    assert bb.out_indices == out_indices


@pytest.mark.parametrize('path', per_config(DET))
def test_detection_config(path):
    cfg = Config.fromfile(path)
    retina = 'retinanet' in path
    check_backbone(cfg, path, (1, 2, 3) if retina else (0, 1, 2, 3))
    expected_in = dims_of(path)[1:] if retina else dims_of(path)
    assert cfg.model.neck.in_channels == expected_in
    assert cfg.model.neck.num_outs == 5
    if retina:  # P3-P7, extra convs on the input
        assert cfg.model.neck.start_level == 0
        assert cfg.model.neck.add_extra_convs == 'on_input'
    # AdamW, lr 1e-4 / 2e-4, wd 1e-4; 12 epochs, x0.1 at 8 and 11, warm-up
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == \
        ('AdamW', 1e-4 if retina else 2e-4, 1e-4)
    assert cfg.train_cfg.max_epochs == 12
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.by_epoch, warmup.end) == ('LinearLR', False,
                                                          500)
    assert (steps.type, steps.milestones, steps.gamma) == ('MultiStepLR',
                                                           [8, 11], 0.1)
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16
    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    test = {t.type: t for t in cfg.test_dataloader.dataset.pipeline}
    for resize in (train['Resize'], test['Resize']):
        assert resize.scale == (1333, 800) and resize.keep_ratio
    assert train['RandomFlip'].prob == 0.5
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
    metrics = cfg.test_evaluator.metric
    assert metrics == 'bbox' if retina else metrics == ['bbox', 'segm']

    model, _ = build(path)
    from mmdet.testing import demo_mm_inputs
    packed = demo_mm_inputs(2, [[3, 96, 128], [3, 80, 112]], num_items=[2, 1],
                            num_classes=80, with_mask=not retina)
    _, results = train_and_predict(model, packed, packed)
    assert len(results) == 2
    assert results[0].pred_instances.bboxes.shape[-1] == 4
    if not retina:
        assert 'masks' in results[0].pred_instances


@pytest.mark.parametrize('path', per_config(SEG))
def test_segmentation_config(path):
    cfg = Config.fromfile(path)
    check_backbone(cfg, path, (0, 1, 2, 3))
    assert cfg.model.neck.in_channels == dims_of(path)
    assert cfg.model.decode_head.type == 'FPNHead'
    assert cfg.model.decode_head.num_classes == 150
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 2e-4, 1e-4)
    (poly, ) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.by_epoch,
            poly.end) == ('PolyLR', 0.9, 0.0, False, 40000)
    assert cfg.train_cfg.max_iters == 40000
    assert cfg.train_dataloader.batch_size == 4  # x 8 GPUs = 32
    assert cfg.train_dataloader.dataset.data_root == \
        'data/ade/ADEChallengeData2016'
    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert train['RandomResize'].scale == (2048, 512)
    assert train['RandomResize'].ratio_range == (0.5, 2.0)
    assert train['RandomCrop'].crop_size == (512, 512)
    assert train['RandomFlip'].prob == 0.5
    assert 'PhotoMetricDistortion' in train
    test = [t.type for t in cfg.test_dataloader.dataset.pipeline]
    assert test[:3] == ['LoadImageFromFile', 'Resize', 'ResizeToMultiple']
    assert cfg.test_pipeline == cfg.test_dataloader.dataset.pipeline
    assert cfg.test_evaluator.iou_metrics == ['mIoU']

    model, _ = build(path)
    step, (result, ) = train_and_predict(
        model, seg_batch([(96, 128), (96, 128)]), seg_batch([(70, 90)]))
    assert step['input'] == (512, 512)  # padded to the crop
    assert result.pred_sem_seg.data.shape == (1, 70, 90)
