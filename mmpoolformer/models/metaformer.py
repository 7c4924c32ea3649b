"""The MetaFormer baselines (Yu et al., "MetaFormer Baselines for Vision",
TPAMI 2024): PoolFormerV2, ConvFormer, CAFormer, IdentityFormer, RandFormer,
and the generic :class:`MetaFormer` they are settings of.

The state-dict layout is timm's (``timm.models.metaformer``) plus our output
norms ``norm{i}``: stages whose mixer works on a token sequence (attention,
random mixing) run channels-last with ``nn.Linear`` MLPs, the others run
NCHW with 1x1 convolutions.
"""
from functools import partial
from numbers import Integral, Real
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath

from ..registry import register_everywhere
from ..weights import convert_metaformer
from .base import DenseBackbone, check_number
from .poolformer import Pooling


class StarReLU(nn.Module):
    """``scale * relu(x) ** 2 + bias`` with learnable scalars."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.relu(x).square() + self.bias


class Scale(nn.Module):
    """Learnable per-channel scale (LayerScale, ResScale)."""

    def __init__(self, dim: int, init_value: float, channels_last: bool):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim, ), float(init_value)))
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale if self.channels_last else self.scale.view(-1, 1, 1)
        return x * scale


@register_everywhere
class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each position, on NCHW maps or on
    channels-last tokens.

    Args:
        num_channels (int): Channels.
        eps (float): Added to the variance. Defaults to 1e-6.
        bias (bool): Learn a bias besides the weight. Defaults to True.
        channels_last (bool): Inputs are ``[..., C]`` rather than
            ``[N, C, H, W]``. Defaults to False.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6,
                 bias: bool = True, channels_last: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels)) if bias else None
        self.eps = eps
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias,
                                self.eps)
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape,
                         self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class SampleNorm(nn.Module):
    """Norm over all of a sample (channels and positions), GroupNorm(1)
    without bias, on NCHW maps or channels-last tokens ``[N, L, C]``."""

    def __init__(self, num_channels: int, eps: float = 1e-6,
                 channels_last: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.eps = eps
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return F.layer_norm(x, x.shape[1:], eps=self.eps) * self.weight
        return F.group_norm(x, 1, self.weight, None, self.eps)


class SepConv(nn.Module):
    """Token mixer: inverted separable convolution (pointwise to twice the
    channels, StarReLU, depthwise 7x7, pointwise back), no biases."""

    def __init__(self, dim: int):
        super().__init__()
        mid = 2 * dim
        self.pwconv1 = nn.Conv2d(dim, mid, 1, bias=False)
        self.act1 = StarReLU()
        self.dwconv = nn.Conv2d(mid, mid, 7, padding=3, groups=mid,
                                bias=False)
        self.pwconv2 = nn.Conv2d(mid, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pwconv2(self.dwconv(self.act1(self.pwconv1(x))))


class Attention(nn.Module):
    """Token mixer: global multi-head self-attention over ``[N, L, C]``
    tokens, heads of 32 channels, no biases. ``scaled_dot_product_attention``
    never holds the L x L matrix in memory (L is ~4k at stride 16 of an
    800x1216 image)."""

    head_dim = 32

    def __init__(self, dim: int):
        super().__init__()
        self.num_heads = max(dim // self.head_dim, 1)
        inner = self.num_heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        qkv = self.qkv(x).view(n, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(
            n, length, self.num_heads * self.head_dim))


class RandomMixing(nn.Module):
    """Token mixer: a frozen random token-by-token matrix (softmax of
    uniform noise) over a fixed number of tokens, so a model with it runs at
    one input size only."""

    def __init__(self, num_tokens: int):
        super().__init__()
        # A buffer, not a parameter: it is never trained.
        self.register_buffer('random_matrix',
                             torch.rand(num_tokens, num_tokens).softmax(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = self.random_matrix.shape[0]
        if x.shape[1] != expected:
            raise ValueError(
                f'RandomMixing was built for {expected} tokens and got '
                f'{x.shape[1]}: a RandFormer runs only at the input size '
                f'it was built for (input_size)')
        return torch.matmul(self.random_matrix, x)


class Mlp(nn.Module):
    """Two bias-free projections (ratio 4) with StarReLU between them: 1x1
    convs on NCHW maps, linear layers on channels-last tokens."""

    def __init__(self, dim: int, channels_last: bool, ratio: int = 4):
        super().__init__()
        layer = nn.Linear if channels_last else \
            partial(nn.Conv2d, kernel_size=1)
        self.fc1 = layer(dim, ratio * dim, bias=False)
        self.act = StarReLU()
        self.fc2 = layer(ratio * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


NORMS = ('channel', 'sample')


def _block_norm(kind: str, dim: int, channels_last: bool) -> nn.Module:
    if kind == 'channel':
        return ChannelNorm(dim, bias=False, channels_last=channels_last)
    return SampleNorm(dim, channels_last=channels_last)


class MetaFormerBlock(nn.Module):
    """``x = RS1 * x + LS1 * mixer(norm1(x))``, then
    ``x = RS2 * x + LS2 * mlp(norm2(x))``, each branch with stochastic
    depth; a scale that is None is left out.

    Args:
        dim (int): Channels.
        token_mixer (nn.Module): The mixer, built for ``dim``.
        norm (str): 'channel' (LayerNorm) or 'sample' (GroupNorm(1)), both
            without bias.
        channels_last (bool): Inputs are ``[N, L, C]`` tokens, not maps.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float, optional): LayerScale init.
        res_scale_init_value (float, optional): ResScale init.
    """

    def __init__(self, dim: int, token_mixer: nn.Module, norm: str,
                 channels_last: bool, drop_path: float = 0.,
                 layer_scale_init_value: float = None,
                 res_scale_init_value: float = None):
        super().__init__()
        for i in (1, 2):
            self.add_module(f'norm{i}', _block_norm(norm, dim, channels_last))
            for name, value in (('layer_scale', layer_scale_init_value),
                                ('res_scale', res_scale_init_value)):
                self.add_module(
                    f'{name}{i}', nn.Identity() if value is None else
                    Scale(dim, value, channels_last))
        self.token_mixer = token_mixer
        self.mlp = Mlp(dim, channels_last)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_scale1(x) + self.drop_path(
            self.layer_scale1(self.token_mixer(self.norm1(x))))
        return self.res_scale2(x) + self.drop_path(
            self.layer_scale2(self.mlp(self.norm2(x))))


class MetaFormerStage(nn.Module):
    """An optional downsampling (norm, then 3x3 stride-2 conv) followed by
    blocks, on NCHW maps in and out; blocks of a token stage see
    ``[N, HW, C]``. Optional gradient checkpointing per block."""

    def __init__(self, in_dim: int, dim: int, blocks: Sequence[nn.Module],
                 channels_last: bool, with_cp: bool = False):
        super().__init__()
        if in_dim is None:
            self.downsample = nn.Identity()
        else:
            self.downsample = nn.Sequential()
            self.downsample.add_module('norm', ChannelNorm(in_dim,
                                                           bias=False))
            self.downsample.add_module('conv', nn.Conv2d(in_dim, dim, 3, 2, 1))
        self.blocks = nn.ModuleList(blocks)
        self.channels_last = channels_last
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        n, c, h, w = x.shape
        if self.channels_last:
            x = x.flatten(2).transpose(1, 2)
        checkpoint = self.with_cp and self.training and \
            torch.is_grad_enabled()
        for block in self.blocks:
            if checkpoint:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        if self.channels_last:
            x = x.transpose(1, 2).reshape(n, c, h, w)
        return x


MIXERS = ('identity', 'pooling', 'sepconv', 'attention', 'random')
# mixers of token sequences: their stages run channels-last
TOKEN_MIXERS = ('attention', 'random')


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
    :class:`CAFormer`, :class:`IdentityFormer`, :class:`RandFormer`) fill in
    ``token_mixers`` and ``norm``; :class:`MetaFormer` itself takes them
    from the arch dict, e.g. the PoolFormer paper's hybrid
    ``dict(depths=(2, 2, 6, 2), dims=(64, 128, 320, 512),
    token_mixers=['pooling', 'pooling', 'attention', 'attention'],
    norm='sample')``.

    Args:
        arch (str | dict): A key of ``arch_settings``, or a dict with
            ``depths`` and ``dims`` (4 positive ints each), ``token_mixers``
            (one of 'identity', 'pooling', 'sepconv', 'attention', 'random',
            or a list of 4), ``norm`` ('channel': LayerNorm over channels;
            'sample': GroupNorm(1)) and optionally ``layer_scale_init_value``
            (None or a float) and ``res_scale_init_values`` (4 floats or
            Nones). A family's dict needs only what differs from its own.
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
    default_arch: str = None
    #: What the family fixes for every arch.
    family: dict = {}
    convert_checkpoint = staticmethod(convert_metaformer)

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
        super().__init__(in_channels, out_indices, frozen_stages, norm_eval,
                         init_cfg, pretrained)
        check_number(type(self).__name__, 'drop_path_rate', drop_path_rate, 0,
                     1, high_open=True)
        arch = self._parse_arch(arch)
        self.depths, self.dims = arch['depths'], arch['dims']
        self.token_mixers = arch['token_mixers']
        if not (isinstance(input_size, Integral) and input_size > 0):
            raise ValueError(f'input_size must be a positive int, got '
                             f'{input_size!r}')
        if norm_cfg is None:
            norm_cfg = dict(type='ChannelNorm', eps=1e-6) \
                if arch['norm'] == 'channel' else dict(type='GN', num_groups=1)

        self.stem = nn.Sequential()
        self.stem.add_module('conv', nn.Conv2d(in_channels, self.dims[0], 7,
                                               4, 2))
        self.stem.add_module('norm', ChannelNorm(self.dims[0], bias=False))
        # Stages after the last output would hold parameters without
        # gradients (DDP's unused-parameter error), so they are not built.
        total = sum(self.depths)
        start = 0
        self.stages = nn.ModuleList()
        for i in range(max(self.out_indices) + 1):
            dim, name = self.dims[i], self.token_mixers[i]
            side = -(-input_size // 2**(i + 2))
            channels_last = name in TOKEN_MIXERS
            blocks = []
            for j in range(self.depths[i]):
                blocks.append(MetaFormerBlock(
                    dim, self._mixer(name, dim, side * side), arch['norm'],
                    channels_last,
                    drop_path_rate * (start + j) / max(total - 1, 1),
                    arch['layer_scale_init_value'],
                    arch['res_scale_init_values'][i]))
            start += self.depths[i]
            in_dim = self.dims[i - 1] if i > 0 else None
            self.stages.append(MetaFormerStage(in_dim, dim, blocks,
                                               channels_last, with_cp))
        for i in self.out_indices:
            self.add_module(f'norm{i}',
                            build_norm_layer(norm_cfg, self.dims[i])[1])
        self._freeze_stages()

    @staticmethod
    def _mixer(name: str, dim: int, num_tokens: int) -> nn.Module:
        if name == 'identity':
            return nn.Identity()
        if name == 'pooling':
            return Pooling()
        if name == 'sepconv':
            return SepConv(dim)
        if name == 'attention':
            return Attention(dim)
        return RandomMixing(num_tokens)

    @classmethod
    def _parse_arch(cls, arch) -> dict:
        name = cls.__name__
        if arch is None:
            arch = cls.default_arch
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_settings:
                raise ValueError(
                    f'Unknown {name} arch {arch!r}; choose one of '
                    f'{sorted(cls.arch_settings)} or pass a dict')
            arch = cls.arch_settings[arch.lower()]
        elif not isinstance(arch, dict):
            raise TypeError(f'{name} needs arch, a str or dict; got {arch!r}')
        arch = dict(dict(layer_scale_init_value=None,
                         res_scale_init_values=(None, None, 1.0, 1.0)),
                    **cls.family, **arch)
        required = {'depths', 'dims', 'token_mixers', 'norm'}
        allowed = required | {'layer_scale_init_value',
                              'res_scale_init_values'}
        missing, unknown = required - set(arch), set(arch) - allowed
        if missing or unknown:
            raise ValueError(
                f'{name} arch dict: missing keys {sorted(missing)}, unknown '
                f'keys {sorted(unknown)}; it takes {sorted(required)} and '
                f'optionally {sorted(allowed - required)}')
        cls._check_sizes(arch)
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
            raise ValueError(f'arch["norm"] must be one of {NORMS}, '
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

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(self._pad_input(x))
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x))
        return tuple(outs)


_S = dict(dims=(64, 128, 320, 512))
_M = dict(dims=(96, 192, 384, 768))
# PoolFormer v1's depths and dims
POOLFORMER_SIZES = {
    's12': dict(depths=(2, 2, 6, 2), **_S),
    's24': dict(depths=(4, 4, 12, 4), **_S),
    's36': dict(depths=(6, 6, 18, 6), **_S),
    'm36': dict(depths=(6, 6, 18, 6), **_M),
    'm48': dict(depths=(8, 8, 24, 8), **_M),
}
CONVFORMER_SIZES = {
    's18': dict(depths=(3, 3, 9, 3), **_S),
    's36': dict(depths=(3, 12, 18, 3), **_S),
    'm36': dict(depths=(3, 12, 18, 3), dims=(96, 192, 384, 576)),
    'b36': dict(depths=(3, 12, 18, 3), dims=(128, 256, 512, 768)),
}


@register_everywhere
class PoolFormerV2(MetaFormer):
    """PoolFormerV2: pooling in every stage, GroupNorm(1)-like norms. See
    :class:`MetaFormer` for the arguments; archs 's12', 's24', 's36',
    'm36', 'm48'."""

    arch_settings = POOLFORMER_SIZES
    default_arch = 's12'
    family = dict(token_mixers='pooling', norm='sample')


@register_everywhere
class IdentityFormer(MetaFormer):
    """IdentityFormer: identity token mixers, GroupNorm(1)-like norms. See
    :class:`MetaFormer` for the arguments; archs 's12', 's24', 's36',
    'm36', 'm48'."""

    arch_settings = POOLFORMER_SIZES
    default_arch = 's12'
    family = dict(token_mixers='identity', norm='sample')


@register_everywhere
class RandFormer(MetaFormer):
    """RandFormer: identity in stages 0-1, random mixing in stages 2-3,
    GroupNorm(1)-like norms. It runs at ``input_size`` only (224 for the
    ImageNet weights), so it suits classification, not dense prediction.
    See :class:`MetaFormer` for the arguments; archs 's12', 's24', 's36',
    'm36', 'm48'."""

    arch_settings = POOLFORMER_SIZES
    default_arch = 's12'
    family = dict(token_mixers=('identity', 'identity', 'random', 'random'),
                  norm='sample')


@register_everywhere
class ConvFormer(MetaFormer):
    """ConvFormer: separable convolutions in every stage, LayerNorm over
    channels. See :class:`MetaFormer` for the arguments; archs 's18',
    's36', 'm36', 'b36'."""

    arch_settings = CONVFORMER_SIZES
    default_arch = 's18'
    family = dict(token_mixers='sepconv', norm='channel')


@register_everywhere
class CAFormer(MetaFormer):
    """CAFormer: separable convolutions in stages 0-1, attention in stages
    2-3, LayerNorm over channels. See :class:`MetaFormer` for the
    arguments; archs 's18', 's36', 'm36', 'b36'."""

    arch_settings = CONVFORMER_SIZES
    default_arch = 's18'
    family = dict(token_mixers=('sepconv', 'sepconv', 'attention',
                                'attention'), norm='channel')
