"""The UperNet configs (mmseg's ConvNeXt UperNet 160K recipe with our
backbones) build and run, and their depth-decayed learning rates reach every
parameter as the recipe says; the constructor works from mmdet too and
refuses what it cannot map."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import mmpoolformer
from mmpoolformer.testing.heads import seg_batch

ROOT = osp.join(osp.dirname(__file__), '..', '..', 'configs')
UPERNET = sorted(glob.glob(osp.join(ROOT, 'segmentation', 'upernet_*.py')))
HUB = ('https://huggingface.co/timm/{}_{}.sail_in1k/resolve/main/'
       'model.safetensors')
TYPES = dict(convformer='ConvFormer', caformer='CAFormer')
# ConvNeXt's UperNet settings by size (mmseg's convnext-{tiny,small,base}
# configs): drop path, num_layers of the stage-wise decay
CONVNEXT = dict(s18=(0.4, 6), s36=(0.3, 12), m36=(0.3, 12), b36=(0.4, 12))
LR, WD, RATE = 1e-4, 0.05, 0.9
TINY = (64, 64)
# models the optimizer tests reuse; the others are built once and dropped
_built = {}
KEEP = ('upernet_convformer_s18.py', 'upernet_convformer_s36.py')


def parse(path):
    family, arch = osp.splitext(osp.basename(path))[0].split('_')[1:]
    return family, arch


def segmentor(path, **backbone):
    """The config's segmentor padding to 64x64, and its config."""
    key = (path, tuple(sorted(backbone.items())))
    if key not in _built:
        from mmengine.model import revert_sync_batchnorm
        from mmseg.registry import MODELS
        cfg = Config.fromfile(path)
        init_default_scope('mmseg')
        cfg.model.backbone.init_cfg = None  # no download here
        cfg.model.backbone.update(backbone)
        cfg.model.data_preprocessor.size = TINY
        built = (revert_sync_batchnorm(MODELS.build(cfg.model)), cfg)
        if osp.basename(path) not in KEEP:
            return built
        _built[key] = built
    return _built[key]


def test_upernet_config_set():
    names = [osp.basename(p) for p in UPERNET]
    assert names == [f'upernet_{f}_{a}.py' for f in ('caformer', 'convformer')
                     for a in ('b36', 'm36', 's18', 's36')]


@pytest.mark.parametrize('path', UPERNET, ids=osp.basename)
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

    model, _ = segmentor(path)
    data = model.data_preprocessor(seg_batch([TINY, (48, 56)]), True)
    assert data['inputs'].shape[-2:] == TINY
    losses = model(**data, mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    model.eval()
    with torch.no_grad():
        (result, ) = model(**model.data_preprocessor(seg_batch([(50, 70)]),
                                                     False), mode='predict')
    assert result.pred_sem_seg.data.shape == (1, 50, 70)


# The expected layer ids, written out for ConvFormer-S18 (depths 3, 3, 9,
# 3) as mmseg assigns ConvNeXt's: the head (and output norms) is
# num_layers + 1.
def stage_wise_id(name, num_layers):
    parts = name.split('.')
    if parts[:2] == ['backbone', 'stem'] or parts[3:4] == ['downsample']:
        return 0
    if parts[1] == 'stages':
        return int(parts[2]) + 1
    return num_layers + 1


S18_LAYER_WISE = {  # (stage, block) -> id, num_layers 6
    **{(0, j): 1 for j in range(3)}, **{(1, j): 2 for j in range(3)},
    **{(2, j): (3, 3, 3, 4, 4, 4, 5, 5, 5)[j] for j in range(9)},
    **{(3, j): 6 for j in range(3)}}
S18_DOWNSAMPLE = {1: 2, 2: 3, 3: 6}


def layer_wise_id(name, num_layers):
    parts = name.split('.')
    if parts[:2] == ['backbone', 'stem']:
        return 0
    if parts[1] == 'stages':
        stage = int(parts[2])
        if parts[3] == 'downsample':
            return S18_DOWNSAMPLE[stage]
        return S18_LAYER_WISE[stage, int(parts[4])]
    return num_layers + 1


def check_groups(model, wrapper, expected_id, num_layers, base_lr=LR,
                 base_wd=WD, rate=RATE):
    """Every trainable parameter is in exactly one group, whose lr and
    weight decay are the recipe's for that parameter."""
    names = {id(p): n for n, p in model.named_parameters()}
    seen = []
    groups = wrapper.optimizer.param_groups
    assert groups
    for group in groups:
        for p in group['params']:
            name = names[id(p)]
            seen.append(name)
            lid = expected_id(name, num_layers)
            assert group['lr'] == pytest.approx(
                base_lr * rate**(num_layers + 1 - lid)), name
            no_decay = p.ndim == 1 or name.endswith('.bias')
            assert group['weight_decay'] == (0. if no_decay else base_wd), \
                name
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(seen) == sorted(trainable)
    return {n: g['lr'] for g in groups for n in g['param_names']}


def test_stage_wise_rates_of_the_recipe():
    path = osp.join(ROOT, 'segmentation', 'upernet_convformer_s18.py')
    model, cfg = segmentor(path)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = check_groups(model, wrapper, stage_wise_id, 6)
    # the recipe's scales, by hand: head 1, stage 3 0.9**3 ... stem 0.9**7
    assert lrs['decode_head.conv_seg.weight'] == pytest.approx(LR)
    assert lrs['backbone.norm3.weight'] == pytest.approx(LR)
    assert lrs['backbone.stages.3.blocks.0.mlp.fc1.weight'] == \
        pytest.approx(LR * 0.729)
    assert lrs['backbone.stages.0.blocks.2.mlp.fc2.weight'] == \
        pytest.approx(LR * 0.9**6)
    assert lrs['backbone.stem.conv.weight'] == pytest.approx(LR * 0.9**7)
    assert lrs['backbone.stages.2.downsample.conv.weight'] == \
        pytest.approx(LR * 0.9**7)
    # StarReLU's scalars and ResScale are 1-d: no weight decay
    groups = {n: g for g in wrapper.optimizer.param_groups
              for n in g['param_names']}
    assert groups['backbone.stages.2.blocks.0.res_scale1.scale'][
        'weight_decay'] == 0
    assert groups['backbone.stages.1.blocks.0.mlp.act.scale'][
        'weight_decay'] == 0
    assert groups['backbone.stages.1.blocks.0.mlp.fc1.weight'][
        'weight_decay'] == WD


def test_layer_wise_rates_and_frozen_stages():
    path = osp.join(ROOT, 'segmentation', 'upernet_convformer_s18.py')
    model, cfg = segmentor(path, frozen_stages=1)
    wrapper_cfg = cfg.optim_wrapper
    wrapper_cfg.paramwise_cfg.decay_type = 'layer_wise'
    wrapper_cfg.optimizer.lr = 3e-4
    wrapper = build_optim_wrapper(model, wrapper_cfg)
    lrs = check_groups(model, wrapper, layer_wise_id, 6, base_lr=3e-4)
    assert not any(n.startswith(('backbone.stem.', 'backbone.stages.0.'))
                   for n in lrs)  # frozen: left out
    assert lrs['backbone.stages.2.blocks.8.mlp.fc1.weight'] == \
        pytest.approx(3e-4 * 0.9**2)


def test_scoped_name_and_mmdet_detector():
    """From mmdet, by the scoped name: RetinaNet with ConvFormer-S18 (no
    stride-4 output norm, FPN neck)."""
    from mmdet.registry import MODELS
    cfg = Config.fromfile(
        osp.join(ROOT, 'detection', 'retinanet_convformer_s18.py'))
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.1),
        constructor='mmpoolformer.DepthDecayOptimWrapperConstructor',
        paramwise_cfg=dict(decay_rate=0.8, decay_type='stage_wise',
                           num_layers=4)))
    lrs = check_groups(model, wrapper, stage_wise_id, 4, base_lr=2e-4,
                       base_wd=0.1, rate=0.8)
    assert lrs['neck.lateral_convs.0.conv.weight'] == pytest.approx(2e-4)
    assert lrs['backbone.stages.0.blocks.0.mlp.fc1.weight'] == \
        pytest.approx(2e-4 * 0.8**4)


def test_poolformer_v1_names():
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    model = MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(type='PoolFormer', arch='s12'),
        decode_head=dict(type='FCNHead', in_channels=512, in_index=3,
                         channels=16, num_classes=3)))
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        constructor='DepthDecayOptimWrapperConstructor',
        paramwise_cfg=dict(decay_rate=0.5, decay_type='stage_wise',
                           num_layers=4)))
    lrs = check_groups(model, wrapper, stage_wise_id, 4, base_lr=1e-3,
                       rate=0.5)
    assert lrs['backbone.stem.weight'] == pytest.approx(1e-3 * 0.5**5)
    assert lrs['backbone.stages.1.downsample.weight'] == \
        pytest.approx(1e-3 * 0.5**5)
    assert lrs['backbone.stages.3.blocks.1.layer_scale1'] == \
        pytest.approx(1e-3 * 0.5)


WRAPPER = dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
               constructor='DepthDecayOptimWrapperConstructor')


@pytest.mark.parametrize('paramwise, match', [
    (dict(decay_rate=0.9, decay_type='block_wise', num_layers=6),
     r"decay_type must be one of \('layer_wise', 'stage_wise'\), got "
     r"'block_wise'"),
    (dict(decay_rate=0.9, num_layers=6, custom_keys={}), 'paramwise_cfg'),
    (dict(decay_rate=0.9), 'paramwise_cfg takes'),
    (dict(decay_rate=1.5, num_layers=6), r'decay_rate .*\(0, 1\], got 1.5'),
    (dict(decay_rate=0.9, decay_type='stage_wise', num_layers=3),
     'num_layers must be an int >= 4'),
])
def test_bad_paramwise_cfg(paramwise, match):
    path = osp.join(ROOT, 'segmentation', 'upernet_convformer_s18.py')
    model, _ = segmentor(path)
    with pytest.raises(ValueError, match=match):
        build_optim_wrapper(model, dict(WRAPPER, paramwise_cfg=paramwise))


def test_num_layers_too_small_for_depth():
    # ConvFormer-S36: stage 2 has 18 blocks, layer ids up to 3 + 17 // 3 = 8
    path = osp.join(ROOT, 'segmentation', 'upernet_convformer_s36.py')
    model, _ = segmentor(path)
    with pytest.raises(ValueError, match=r"num_layers=6 is too small for "
                       r"'backbone\.stages\.2\.blocks\.12\."):
        build_optim_wrapper(model, dict(WRAPPER, paramwise_cfg=dict(
            decay_rate=0.9, decay_type='layer_wise', num_layers=6)))


def test_foreign_backbone_is_refused():
    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Module()
            self.backbone.downsample_layers = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"'backbone\.downsample_layers\."
                       r"weight' is not a parameter of an mmpoolformer"):
        build_optim_wrapper(Toy(), dict(WRAPPER, paramwise_cfg=dict(
            decay_rate=0.9, num_layers=6)))


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


@pytest.mark.parametrize('path', SIZES, ids=osp.basename)
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
    expected, got = first.to_dict(), cfg.to_dict()
    expected.pop('pretrained'), got.pop('pretrained')
    assert got == expected

    scope = 'mmseg' if kind == 'fpn' else 'mmdet'
    init_default_scope(scope)
    cfg.model.backbone.init_cfg = None  # no download here
    if scope == 'mmseg':
        from mmengine.model import revert_sync_batchnorm
        from mmseg.registry import MODELS
        cfg.model.data_preprocessor.size = TINY
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
        train, test = seg_batch([TINY]), seg_batch([(48, 56)])
    else:
        from mmdet.registry import MODELS
        model = MODELS.build(cfg.model)
        train = test = det_inputs(retina)
    losses = model(**model.data_preprocessor(train, True), mode='loss')
    total, _ = model.parse_losses(losses)  # as training sums them
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        (result, ) = model(**model.data_preprocessor(test, False),
                           mode='predict')
    if scope == 'mmseg':
        assert result.pred_sem_seg.data.shape == (1, 48, 56)
    else:
        assert result.pred_instances.bboxes.shape[-1] == 4
