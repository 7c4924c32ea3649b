"""DepthDecayOptimWrapperConstructor: the backbone answers each parameter's
layer id (``get_layer_depth``, mmpretrain's ConvNeXt idiom) and the
constructor does the arithmetic. The groups are those of the recipe (mmseg's
rules for ConvNeXt), the same for every family and size as the regexes over
parameter names gave before the backbones answered; the constructor works
from mmdet too and refuses what it cannot map."""
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import mmpoolformer
from helpers.configs import CONFIGS, build_segmentor

LR, WD, RATE = 1e-4, 0.05, 0.9
FAMILIES = ('PoolFormer', 'PoolFormerV2', 'ConvFormer', 'CAFormer',
            'IdentityFormer', 'RandFormer')


# -- before: the constructor's rules as regexes over parameter names ---------
# (engine/optim.py's layer_id until the backbones answered themselves; kept
# as the reference the new groups must equal)
_STEM = re.compile(r'backbone\.stem\.')
_DOWNSAMPLE = re.compile(r'backbone\.stages\.(\d+)\.downsample\.')
_BLOCK = re.compile(r'backbone\.stages\.(\d+)\.blocks\.(\d+)\.')
_OUT_NORM = re.compile(r'backbone\.norm\d+\.')


def regex_layer_id(name, decay_type, num_layers):
    head = num_layers + 1
    if not name.startswith('backbone.') or _OUT_NORM.match(name):
        return head
    if _STEM.match(name):
        return 0
    down, block = _DOWNSAMPLE.match(name), _BLOCK.match(name)
    assert down or block, name
    stage = int((down or block).group(1))
    if decay_type == 'stage_wise':
        return 0 if down else stage + 1
    if stage == 3:
        return num_layers
    if down:
        return (0, 2, 3)[stage]
    return (1, 2, 3 + int(block.group(2)) // 3)[stage]


def regex_groups(model, decay_type, num_layers, base_lr, base_wd, rate):
    """{group name: (lr, weight decay, [parameter names])} as the regex
    constructor made them."""
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = regex_layer_id(name, decay_type, num_layers)
        decay = not (p.ndim == 1 or name.endswith('.bias'))
        key = f'layer_{lid}_{"decay" if decay else "no_decay"}'
        lr = rate**(num_layers + 1 - lid) * base_lr
        entry = groups.setdefault(key, (lr, base_wd if decay else 0., []))
        entry[2].append(name)
    return groups


def built_groups(model, decay_type, num_layers, base_lr=LR, base_wd=WD,
                 rate=RATE):
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=base_lr, weight_decay=base_wd),
        constructor='DepthDecayOptimWrapperConstructor',
        paramwise_cfg=dict(decay_rate=rate, decay_type=decay_type,
                           num_layers=num_layers)))
    return {g['group_name']: (g['lr'], g['weight_decay'], g['param_names'])
            for g in wrapper.optimizer.param_groups}


class Wrapped(torch.nn.Module):
    """A backbone as a model's ``backbone``, with a head beside it."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Conv2d(backbone.dims[-1], 3, 1)


def archs():
    return [(f, a) for f in FAMILIES
            for a in getattr(mmpoolformer, f).arch_settings]


@pytest.mark.parametrize('family, arch', archs())
def test_groups_equal_the_regex_rules(family, arch):
    """Every family and size, both decay types, every output selection's
    last stage: the same groups, rates and weight decays as before."""
    cls = getattr(mmpoolformer, family)
    depths = cls.arch_settings[arch]['depths']
    layers = 4 + (depths[2] - 1) // 3  # the least layer_wise takes
    with torch.device('meta'):  # names and shapes only: nothing computed
        models = [Wrapped(cls(arch)),
                  Wrapped(cls(arch, out_indices=(1, 2), frozen_stages=1))]
    for model in models:
        for kind in ('layer_wise', 'stage_wise'):
            assert built_groups(model, kind, layers) == regex_groups(
                model, kind, layers, LR, WD, RATE), (kind, model)


@pytest.mark.parametrize('family', FAMILIES)
def test_backbone_answers_its_layer_depth(family):
    """``get_layer_depth`` as mmpretrain's ConvNeXt answers it: (id, number
    of ids); names outside ``prefix`` are the head's."""
    cls = getattr(mmpoolformer, family)
    with torch.device('meta'):
        backbone = cls()
    layers = 3 + backbone.depths[2] // 3  # mmseg's 6 for 9 blocks
    assert backbone.get_layer_depth('stem.conv.weight' if family !=
                                    'PoolFormer' else 'stem.weight') == \
        (0, layers + 2)
    assert backbone.get_layer_depth('neck.conv.weight', 'backbone.') == \
        (layers + 1, layers + 2)
    assert backbone.get_layer_depth('backbone.norm2.weight', 'backbone.') \
        == (layers + 1, layers + 2)
    assert backbone.get_layer_depth(
        'stages.3.blocks.0.norm1.weight', decay_type='stage_wise',
        num_layers=4) == (4, 6)
    with pytest.raises(ValueError, match=r"'stages\.9\.foo' is not a "
                       f'parameter of this {cls.__name__}'):
        backbone.get_layer_depth('stages.9.foo')


# -- the UperNet recipe's rates, by hand ---------------------------------------

def stage_wise_id(name, num_layers):
    parts = name.split('.')
    if parts[:2] == ['backbone', 'stem'] or parts[3:4] == ['downsample']:
        return 0
    if parts[1] == 'stages':
        return int(parts[2]) + 1
    return num_layers + 1


# The expected layer ids, written out for ConvFormer-S18 (depths 3, 3, 9,
# 3) as mmseg assigns ConvNeXt's: the head (and output norms) is
# num_layers + 1.
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


S18 = CONFIGS / 'segmentation' / 'upernet_convformer_s18.py'


def test_stage_wise_rates_of_the_recipe():
    model, cfg = build_segmentor(S18)
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
    model, cfg = build_segmentor(S18, frozen_stages=1)
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
        str(CONFIGS / 'detection' / 'retinanet_convformer_s18.py'))
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
    model, _ = build_segmentor(S18)
    with pytest.raises(ValueError, match=match):
        build_optim_wrapper(model, dict(WRAPPER, paramwise_cfg=paramwise))


def test_num_layers_too_small_for_depth():
    # ConvFormer-S36: stage 2 has 18 blocks, layer ids up to 3 + 17 // 3 = 8
    model, _ = build_segmentor(
        CONFIGS / 'segmentation' / 'upernet_convformer_s36.py')
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
                       r"weight': the backbone \(Module\) has no "
                       r'get_layer_depth'):
        build_optim_wrapper(Toy(), dict(WRAPPER, paramwise_cfg=dict(
            decay_rate=0.9, num_layers=6)))
