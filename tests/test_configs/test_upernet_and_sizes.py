"""The UperNet configs (mmseg's ConvNeXt UperNet 160K recipe with our
backbones) and the larger sizes build and run; the UperNet configs state the
recipe's depth-decayed learning rates (their groups are tested in
tests/test_engine/test_optim.py)."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

import mmpoolformer
from helpers.configs import (CONFIGS, build, build_segmentor,
                             train_and_predict)
from helpers.tiers import per_config
from mmpoolformer.testing.heads import seg_batch

ROOT = str(CONFIGS)
UPERNET = sorted(glob.glob(osp.join(ROOT, 'segmentation', 'upernet_*.py')))
HUB = ('https://huggingface.co/timm/{}_{}.sail_in1k/resolve/main/'
       'model.safetensors')
TYPES = dict(convformer='ConvFormer', caformer='CAFormer')
# ConvNeXt's UperNet settings by size (mmseg's convnext-{tiny,small,base}
# configs): drop path, num_layers of the stage-wise decay
CONVNEXT = dict(s18=(0.4, 6), s36=(0.3, 12), m36=(0.3, 12), b36=(0.4, 12))
LR, WD, RATE = 1e-4, 0.05, 0.9
TINY = (64, 64)
# the segmentors the optimizer tests reuse are kept; the others are not
KEEP = ('upernet_convformer_s18.py', 'upernet_convformer_s36.py')


def parse(path):
    family, arch = osp.splitext(osp.basename(path))[0].split('_')[1:]
    return family, arch


def test_upernet_config_set():
    names = [osp.basename(p) for p in UPERNET]
    assert names == [f'upernet_{f}_{a}.py' for f in ('caformer', 'convformer')
                     for a in ('b36', 'm36', 's18', 's36')]


@pytest.mark.parametrize('path', per_config(UPERNET))
def test_upernet_config(path):
    cfg = Config.fromfile(path)
    family, arch = parse(path)
    bb = cfg.model.backbone
    assert (bb.type, bb.arch) == (TYPES[family], arch)
    assert bb.init_cfg == dict(type='Pretrained',
                               checkpoint=HUB.format(family, arch))
    drop_path, num_layers = CONVNEXT[arch]
    assert bb.drop_path_rate == drop_path
    dims = list(getattr(mmpoolformer, bb.type).arch_settings[arch]['dims'])
    head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
    assert (head.type, head.in_channels, head.channels,
            head.num_classes) == ('UPerHead', dims, 512, 150)
    assert (aux.type, aux.in_channels, aux.in_index,
            aux.num_classes) == ('FCNHead', dims[2], 2, 150)
    assert aux.loss_decode.loss_weight == 0.4
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(512, 512),
                                      stride=(341, 341))
    wrapper = cfg.optim_wrapper
    assert wrapper.constructor == 'DepthDecayOptimWrapperConstructor'
    assert wrapper.paramwise_cfg == dict(decay_rate=RATE,
                                         decay_type='stage_wise',
                                         num_layers=num_layers)
    opt = wrapper.optimizer
    assert (opt.type, opt.lr, opt.betas, opt.weight_decay) == \
        ('AdamW', LR, (0.9, 0.999), WD)
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == ('LinearLR',
                                                              1e-6, 1500)
    assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end) == \
        ('PolyLR', 1.0, 0.0, 1500, 160000)
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert train['RandomCrop'].crop_size == (512, 512)
    assert train['RandomResize'].scale == (2048, 512)
    assert cfg.model.data_preprocessor.size == (512, 512)

    model, _ = build_segmentor(path) if osp.basename(path) in KEEP else \
        build(path, TINY)
    step, (result, ) = train_and_predict(
        model, seg_batch([TINY, (48, 56)]), seg_batch([(50, 70)]),
        every_parameter=True)  # the auxiliary head's too
    assert step['input'] == TINY
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(step['losses'])
    assert result.pred_sem_seg.data.shape == (1, 50, 70)


# The larger sizes: deltas of their family's first config (PoolFormer-S12's
# recipes), run at a tiny input.
SIZES = sorted(
    p for folder in ('detection', 'segmentation')
    for p in glob.glob(osp.join(ROOT, folder, '*.py'))
    if any(k in osp.basename(p) for k in (
        'convformer_m36', 'convformer_b36', 'caformer_m36', 'caformer_b36',
        'poolformerv2_s36', 'poolformerv2_m36', 'poolformerv2_m48',
        'identityformer_')) and 'upernet' not in p)
FAMILIES = dict(convformer='ConvFormer', caformer='CAFormer',
                poolformerv2='PoolFormerV2', identityformer='IdentityFormer')
FIRST = dict(convformer='convformer_s18', caformer='caformer_s18',
             poolformerv2='poolformerv2_s12', identityformer='poolformer_s12')
SAIL = 'https://huggingface.co/sail/dl/resolve/main/identityformer/' \
    'identityformer_{}.pth'


def test_size_set():
    names = sorted(osp.basename(p) for p in SIZES)
    sizes = dict(convformer=('m36', 'b36'), caformer=('m36', 'b36'),
                 poolformerv2=('s36', 'm36', 'm48'),
                 identityformer=('s12', 's24', 's36', 'm36', 'm48'))
    assert names == sorted(
        f'{kind}_{family}_{arch}.py'
        for kind in ('retinanet', 'mask_rcnn', 'fpn')
        for family, archs in sizes.items() for arch in archs)


def det_inputs(retina):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(1, [[3, 64, 64]], num_items=[2], num_classes=80,
                          with_mask=not retina)


@pytest.mark.parametrize('path', per_config(SIZES))
def test_size_config(path):
    kind, family, arch = osp.splitext(osp.basename(path))[0].rsplit('_', 2)
    cfg = Config.fromfile(path)
    bb = cfg.model.backbone
    cls = getattr(mmpoolformer, FAMILIES[family])
    dims = list(cls.arch_settings[arch]['dims'])
    url = SAIL.format(arch) if family == 'identityformer' else \
        HUB.format(family, arch)
    assert (bb.type, bb.arch) == (cls.__name__, arch)
    assert bb.init_cfg == dict(type='Pretrained', checkpoint=url)
    retina = kind == 'retinanet'
    assert cfg.model.neck.in_channels == (dims[1:] if retina else dims)
    # all else is the family's first config
    first = Config.fromfile(osp.join(osp.dirname(path),
                                     f'{kind}_{FIRST[family]}.py'))
    first.model.backbone.update(type=bb.type, arch=arch,
                                init_cfg=bb.init_cfg)
    first.model.neck.in_channels = cfg.model.neck.in_channels
    assert cfg.to_dict() == first.to_dict()

    scope = 'mmseg' if kind == 'fpn' else 'mmdet'
    model, _ = build(path, TINY)
    if scope == 'mmseg':
        train, test = seg_batch([TINY]), seg_batch([(48, 56)])
    else:
        train = test = det_inputs(retina)
    _, (result, ) = train_and_predict(model, train, test)
    if scope == 'mmseg':
        assert result.pred_sem_seg.data.shape == (1, 48, 56)
    else:
        assert result.pred_instances.bboxes.shape[-1] == 4
