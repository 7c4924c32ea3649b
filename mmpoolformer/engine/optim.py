"""Learning rates that decay with depth for our backbones.

mmseg's ``LearningRateDecayOptimizerConstructor`` (the ConvNeXt and BEiT
UperNet recipes) picks layer ids by ConvNeXt's and BEiT's parameter names
and raises ``NotImplementedError`` for any other backbone, so the recipe
cannot be used with ours as it is. Here the backbone answers each
parameter's id (``get_layer_depth``, as mmpretrain's backbones do) by the
same rules, and the constructor does the arithmetic; it works from mmdet,
mmseg and mmpretrain configs alike.
"""
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as ROOT_CONSTRUCTORS

from ..registry import OPTIM_WRAPPER_CONSTRUCTORS

DECAY_TYPES = ('layer_wise', 'stage_wise')
KEYS = ('decay_rate', 'decay_type', 'num_layers')


def layer_id(module, name: str, decay_type: str, num_layers: int) -> int:
    """The layer id of parameter ``name`` of ``module`` (a detector,
    segmentor or classifier): its ``backbone``'s answer for
    ``backbone.*`` names, ``num_layers + 1`` (the head's) for the rest."""
    if not name.startswith('backbone.'):
        return num_layers + 1
    answer = getattr(module.backbone, 'get_layer_depth', None)
    if answer is None:
        raise ValueError(
            f'{name!r}: the backbone ({type(module.backbone).__name__}) has '
            f'no get_layer_depth; for ConvNeXt or BEiT use mmseg\'s '
            f'LearningRateDecayOptimizerConstructor')
    return answer(name, 'backbone.', decay_type, num_layers)[0]


@ROOT_CONSTRUCTORS.register_module()
@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DepthDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Per-layer learning rates ``lr * decay_rate ** (num_layers + 1 - id)``
    (the ids are the backbone's ``get_layer_depth``, see
    :meth:`~mmpoolformer.models.base.DenseBackbone.get_layer_depth`) and ConvNeXt's weight-decay exemptions: biases
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
            lid = layer_id(module, name, kind, layers)
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
