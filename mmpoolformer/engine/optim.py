"""Learning rates that decay with depth for our backbones.

mmseg's ``LearningRateDecayOptimizerConstructor`` (the ConvNeXt and BEiT
UperNet recipes) picks layer ids by ConvNeXt's and BEiT's parameter names
and raises ``NotImplementedError`` for any other backbone, so the recipe
cannot be used with ours as it is. This constructor applies the same rules
to our names (``stem``, ``stages.{i}.downsample``, ``stages.{i}.blocks.{j}``,
``norm{i}``) and works from mmdet, mmseg and mmpretrain configs alike.
"""
import re

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as ROOT_CONSTRUCTORS

from ..registry import OPTIM_WRAPPER_CONSTRUCTORS

DECAY_TYPES = ('layer_wise', 'stage_wise')
KEYS = ('decay_rate', 'decay_type', 'num_layers')

_STEM = re.compile(r'backbone\.stem\.')
_DOWNSAMPLE = re.compile(r'backbone\.stages\.(\d+)\.downsample\.')
_BLOCK = re.compile(r'backbone\.stages\.(\d+)\.blocks\.(\d+)\.')
_OUT_NORM = re.compile(r'backbone\.norm\d+\.')


def layer_id(name: str, decay_type: str, num_layers: int) -> int:
    """The layer id of parameter ``name`` of a whole model (detector or
    segmentor), as mmseg assigns ConvNeXt's: 0 for the stem, up to
    ``num_layers`` for the last stage, ``num_layers + 1`` for the output
    norms, neck and heads.

    'layer_wise': stage 0 is 1, stage 1 is 2, stage 2 counts 3, 4, ... per
    three blocks, stage 3 is ``num_layers``; a stage's downsampling shares
    its first blocks' id. 'stage_wise': stage i is i + 1 and every
    downsampling layer is 0, as mmseg does for ConvNeXt.
    """
    head = num_layers + 1
    if not name.startswith('backbone.') or _OUT_NORM.match(name):
        # mmseg gives ConvNeXt's output norms the head's rate too
        return head
    if _STEM.match(name):
        return 0
    down, block = _DOWNSAMPLE.match(name), _BLOCK.match(name)
    if down is None and block is None:
        raise ValueError(
            f'{name!r} is not a parameter of an mmpoolformer backbone '
            f'(backbone.stem.*, backbone.stages.{{i}}.downsample.*, '
            f'backbone.stages.{{i}}.blocks.{{j}}.*, backbone.norm{{i}}.*); '
            f"for ConvNeXt or BEiT use mmseg's "
            f'LearningRateDecayOptimizerConstructor')
    stage = int((down or block).group(1))
    if decay_type == 'stage_wise':
        return 0 if down else stage + 1
    if stage == 3:
        return num_layers
    if down:
        return (0, 2, 3)[stage]
    lid = (1, 2, 3 + int(block.group(2)) // 3)[stage]
    if lid > num_layers:
        raise ValueError(
            f'num_layers={num_layers} is too small for {name!r}: its layer '
            f'id {lid} is above stage 3\'s ({num_layers}); layer_wise needs '
            f'num_layers >= 3 + (blocks in stage 2 - 1) // 3')
    return lid


@ROOT_CONSTRUCTORS.register_module()
@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DepthDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Per-layer learning rates ``lr * decay_rate ** (num_layers + 1 - id)``
    (see :func:`layer_id`) and ConvNeXt's weight-decay exemptions: biases
    and 1-d parameters (norms, scales, StarReLU's scalars) get none.

    The rules, ids and scales are those of mmseg's
    ``LearningRateDecayOptimizerConstructor`` for ConvNeXt; only the
    parameter names are ours. ``paramwise_cfg``
    takes exactly ``decay_rate`` (in (0, 1]), ``decay_type``
    ('layer_wise' or 'stage_wise', default 'layer_wise') and
    ``num_layers`` (ConvNeXt's recipes: 12, or 6 for ConvNeXt-T). Frozen
    parameters are left out.

    Example::

        optim_wrapper = dict(
            type='AmpOptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            constructor='DepthDecayOptimWrapperConstructor',
            paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise',
                               num_layers=6))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        cfg = dict(paramwise_cfg or {})
        name = type(self).__name__
        unknown = set(cfg) - set(KEYS)
        if unknown or 'decay_rate' not in cfg or 'num_layers' not in cfg:
            raise ValueError(
                f'{name}: paramwise_cfg takes decay_rate, num_layers and '
                f'optionally decay_type, got {paramwise_cfg!r}')
        cfg.setdefault('decay_type', 'layer_wise')
        if cfg['decay_type'] not in DECAY_TYPES:
            raise ValueError(f'{name}: decay_type must be one of '
                             f'{DECAY_TYPES}, got {cfg["decay_type"]!r}')
        rate, layers = cfg['decay_rate'], cfg['num_layers']
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) \
                or not 0 < rate <= 1:
            raise ValueError(f'{name}: decay_rate must be a number in '
                             f'(0, 1], got {rate!r}')
        least = 4 if cfg['decay_type'] == 'stage_wise' else 3
        if isinstance(layers, bool) or not isinstance(layers, int) \
                or layers < least:
            raise ValueError(
                f'{name}: num_layers must be an int >= {least} for '
                f'{cfg["decay_type"]}, got {layers!r}')
        super().__init__(optim_wrapper_cfg, cfg)

    def add_params(self, params, module, **kwargs):
        """Append one group per (layer id, decay or not) to ``params``."""
        cfg = self.paramwise_cfg
        rate, layers, kind = (cfg['decay_rate'], cfg['num_layers'],
                              cfg['decay_type'])
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            lid = layer_id(name, kind, layers)
            decay = not (param.ndim == 1 or name.endswith('.bias'))
            key = f'layer_{lid}_{"decay" if decay else "no_decay"}'
            if key not in groups:
                scale = rate**(layers + 1 - lid)
                groups[key] = dict(params=[], param_names=[], group_name=key,
                                   lr_scale=scale, lr=scale * self.base_lr)
                if not decay:
                    groups[key]['weight_decay'] = 0.
                elif self.base_wd is not None:
                    groups[key]['weight_decay'] = self.base_wd
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        print_log(f'{type(self).__name__}: {kind}, decay_rate {rate}, '
                  f'num_layers {layers}: {len(groups)} parameter groups',
                  logger='current')
        params.extend(groups.values())
