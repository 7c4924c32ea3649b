"""The MetaFormer baselines (Yu et al., "MetaFormer Baselines for Vision",
TPAMI 2024): PoolFormerV2, ConvFormer, CAFormer, IdentityFormer, RandFormer,
and the generic :class:`MetaFormer` they are settings of.

The state-dict layout is timm's (``timm.models.metaformer``) plus our output
norms ``norm{i}``: stages whose mixer works on a token sequence (attention,
random mixing) run channels-last with ``nn.Linear`` MLPs, the others run
NCHW with 1x1 convolutions.
"""
from collections import OrderedDict
from numbers import Integral, Real
from typing import Dict, Sequence, Union

import torch.nn as nn

from ..registry import register_everywhere
from ..weights import convert_metaformer
from .base import DenseBackbone
from .layers import (MIXERS, NORMS, TOKEN_MIXERS, ChannelNorm,
                     MetaFormerBlock, Stage, build_mixer)
from .sizes import CONVFORMER_SIZES, POOLFORMER_SIZES, family_table


#: The baselines' scales: no LayerScale, ResScale (init 1) in stages 2-3.
#: Each family adds them, its token mixers and its norm to its generation's
#: sizes.
BASELINE = dict(layer_scale_init_value=None,
                res_scale_init_values=(None, None, 1.0, 1.0))


@register_everywhere
class MetaFormer(DenseBackbone):
    """MetaFormer backbone returning multi-scale features, with any token
    mixer per stage.

    `MetaFormer Baselines for Vision <https://arxiv.org/abs/2210.13452>`_.

    A 7x7 stride-4 conv and a norm (the stem), then four stages at strides
    4, 8, 16 and 32, each after the first starting with a norm and a 3x3
    stride-2 conv. Blocks have no LayerScale, ResScale (init 1) in stages
    2-3, bias-free norms (eps 1e-6) and StarReLU MLPs. Output i is
    ceil(H / 2**(i+2)) x ceil(W / 2**(i+2)) for any input size (except
    with random mixing, which fixes it).

    The named families (:class:`PoolFormerV2`, :class:`ConvFormer`,
    :class:`CAFormer`, :class:`IdentityFormer`, :class:`RandFormer`) are
    their generation's size table (:mod:`.sizes`) with the family's mixers,
    norm and scales (``arch_settings``, whole settings); :class:`MetaFormer` itself
    takes a whole setting as a dict, e.g. the PoolFormer paper's hybrid
    ``dict(depths=(2, 2, 6, 2), dims=(64, 128, 320, 512),
    token_mixers=['pooling', 'pooling', 'attention', 'attention'],
    norm='sample')``.

    Args:
        arch (str | dict): A key of ``arch_settings``, or a dict with
            ``depths`` and ``dims`` (4 positive ints each), ``token_mixers``
            (one of 'identity', 'pooling', 'sepconv', 'attention', 'random',
            or a list of 4), ``norm`` ('channel': LayerNorm over channels;
            'sample': GroupNorm(1)) and optionally ``layer_scale_init_value``
            (None or a float; default None) and ``res_scale_init_values``
            (4 floats or Nones; default ``(None, None, 1.0, 1.0)``). A
            family's dict changes its smallest arch's row.
            Defaults to the family's smallest arch; :class:`MetaFormer`
            itself needs a dict.
        in_channels (int): Channels of the input image. Defaults to 3.
        input_size (int): Square input size that random mixing is built for
            (it mixes a fixed number of tokens). Defaults to 224.
        out_indices (Sequence[int]): Stages whose outputs are returned,
            0..3 for strides 4/8/16/32. Only these get an output norm, and
            stages after the last are not built, so every parameter receives
            a gradient. Defaults to (0, 1, 2, 3).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k >= 1 the stem
            and stages 0..k-1. Defaults to -1.
        norm_eval (bool): Keep batch-norm layers (if ``norm_cfg`` uses them)
            in eval mode during training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        drop_path_rate (float): Stochastic depth of the last block; it rises
            linearly from 0 over all blocks. Defaults to 0.
        norm_cfg (dict, optional): Output norms. Defaults to the blocks'
            kind: ``dict(type='ChannelNorm', eps=1e-6)`` or
            ``dict(type='GN', num_groups=1)``.
        init_cfg (dict | list[dict], optional): ``dict(type='Pretrained',
            checkpoint=PATH_OR_URL)`` (optionally with ``prefix``) loads
            timm, official (sail-sg/metaformer) or mmpoolformer weights,
            ``.pth`` or ``.safetensors``, strictly (see
            :mod:`mmpoolformer.weights`); other entries run first.
            Defaults to None.
        pretrained (str, optional): Deprecated (mmseg's older form):
            the same as a ``Pretrained`` ``init_cfg``. Defaults to None.
    """

    arch_settings: Dict[str, dict] = {}
    arch_required = ('depths', 'dims', 'token_mixers', 'norm')
    arch_optional = ('layer_scale_init_value', 'res_scale_init_values')
    #: What :class:`MetaFormer`'s arch dict may leave out: the baselines'
    #: scales (no LayerScale, ResScale in stages 2-3).
    arch_defaults = BASELINE

    def __init__(self,
                 arch: Union[str, dict] = None,
                 in_channels: int = 3,
                 input_size: int = 224,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = None,
                 init_cfg: Union[dict, list] = None,
                 pretrained: str = None):
        super().__init__(self.default_arch if arch is None else arch,
                         in_channels, out_indices, frozen_stages, norm_eval,
                         drop_path_rate, init_cfg, pretrained,
                         convert=convert_metaformer)
        if not (isinstance(input_size, Integral) and input_size > 0):
            raise ValueError(f'input_size must be a positive int, got '
                             f'{input_size!r}')
        arch = self.arch
        self.token_mixers = arch['token_mixers']

        def stage(i, drop_path_rates):
            dim, mixer = self.dims[i], self.token_mixers[i]
            side = -(-input_size // 2**(i + 2))
            tokens = mixer in TOKEN_MIXERS
            blocks = [MetaFormerBlock(
                dim, build_mixer(mixer, dim, side * side), arch['norm'],
                tokens, rate, arch['layer_scale_init_value'],
                arch['res_scale_init_values'][i]) for rate in drop_path_rates]
            down = nn.Identity() if i == 0 else nn.Sequential(OrderedDict(
                norm=ChannelNorm(self.dims[i - 1], bias=False),
                conv=nn.Conv2d(self.dims[i - 1], dim, 3, 2, 1)))
            return Stage(down, blocks, tokens, with_cp)

        stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(in_channels, self.dims[0], 7, 4, 2),
            norm=ChannelNorm(self.dims[0], bias=False)))
        self._build(stem, stage, norm_cfg or NORMS[arch['norm']]['output'])

    @classmethod
    def _check_arch(cls, arch: dict) -> dict:
        mixers = arch['token_mixers']
        if isinstance(mixers, str):
            mixers = (mixers, ) * 4
        if not (isinstance(mixers, Sequence) and len(mixers) == 4
                and all(m in MIXERS for m in mixers)):
            raise ValueError(
                f'arch["token_mixers"] must be one of {MIXERS} or a list of '
                f'4 of them, got {arch["token_mixers"]!r}')
        arch['token_mixers'] = tuple(mixers)
        if arch['norm'] not in NORMS:
            raise ValueError(f'arch["norm"] must be one of {tuple(NORMS)}, '
                             f'got {arch["norm"]!r}')
        ls = arch['layer_scale_init_value']
        if not (ls is None or isinstance(ls, Real)):
            raise ValueError(f'arch["layer_scale_init_value"] must be None or '
                             f'a float, got {ls!r}')
        rs = arch['res_scale_init_values']
        if not (isinstance(rs, Sequence) and len(rs) == 4 and all(
                v is None or isinstance(v, Real) for v in rs)):
            raise ValueError(f'arch["res_scale_init_values"] must be 4 floats '
                             f'or Nones, got {rs!r}')
        return arch


@register_everywhere
class PoolFormerV2(MetaFormer):
    """PoolFormerV2: pooling in every stage, GroupNorm(1)-like norms. See
    :class:`MetaFormer` for the arguments."""

    default_arch = 's12'
    arch_settings = family_table(POOLFORMER_SIZES,
                                 token_mixers=('pooling', ) * 4,
                                 norm='sample', **BASELINE)


@register_everywhere
class IdentityFormer(MetaFormer):
    """IdentityFormer: identity token mixers, GroupNorm(1)-like norms. See
    :class:`MetaFormer` for the arguments."""

    default_arch = 's12'
    arch_settings = family_table(POOLFORMER_SIZES,
                                 token_mixers=('identity', ) * 4,
                                 norm='sample', **BASELINE)


@register_everywhere
class RandFormer(MetaFormer):
    """RandFormer: identity in stages 0-1, random mixing in stages 2-3,
    GroupNorm(1)-like norms. It runs at ``input_size`` only (224 for the
    ImageNet weights), so it suits classification, not dense prediction.
    See :class:`MetaFormer` for the arguments."""

    default_arch = 's12'
    arch_settings = family_table(
        POOLFORMER_SIZES,
        token_mixers=('identity', 'identity', 'random', 'random'),
        norm='sample', **BASELINE)


@register_everywhere
class ConvFormer(MetaFormer):
    """ConvFormer: separable convolutions in every stage, LayerNorm over
    channels. See :class:`MetaFormer` for the arguments."""

    default_arch = 's18'
    arch_settings = family_table(CONVFORMER_SIZES,
                                 token_mixers=('sepconv', ) * 4,
                                 norm='channel', **BASELINE)


@register_everywhere
class CAFormer(MetaFormer):
    """CAFormer: separable convolutions in stages 0-1, attention in stages
    2-3, LayerNorm over channels. See :class:`MetaFormer` for the
    arguments."""

    default_arch = 's18'
    arch_settings = family_table(
        CONVFORMER_SIZES,
        token_mixers=('sepconv', 'sepconv', 'attention', 'attention'),
        norm='channel', **BASELINE)
