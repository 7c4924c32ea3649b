"""The parts MetaFormers are made of, written once for PoolFormer (v1) and
the MetaFormer baselines: the pooling token mixer and the other mixers,
norms, scales, StarReLU, the MLP, the baselines' block, and the stage that
runs any of the blocks.

Maps are NCHW; a stage whose mixer works on a token sequence (attention,
random mixing) hands its blocks channels-last ``[N, HW, C]`` tokens, and
its parts take ``channels_last=True``.
"""
from functools import partial
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath

from ..registry import register_everywhere
from ..torchapi import autocast_dtype, autocast_enabled


class Pooling(nn.Module):
    """Token mixer: average pooling minus the input.

    Border windows average only the pixels inside the map. The input is
    subtracted because the block adds it back through the residual
    connection.
    """

    def __init__(self, pool_size: int = 3):
        super().__init__()
        self.pool_size = pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.pool_size
        return F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False) - x


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
        return fp16_safe(lambda t: self.pwconv2(self.dwconv(t)),
                         self.act1(self.pwconv1(x)))


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


MIXERS = ('identity', 'pooling', 'sepconv', 'attention', 'random')
#: Mixers of token sequences: their stages run channels-last.
TOKEN_MIXERS = ('attention', 'random')


def build_mixer(name: str, dim: int, num_tokens: int) -> nn.Module:
    """Token mixer ``name`` (one of :data:`MIXERS`) for ``dim`` channels;
    ``num_tokens`` is the map size random mixing is built for."""
    if name == 'identity':
        return nn.Identity()
    if name == 'pooling':
        return Pooling()
    if name == 'sepconv':
        return SepConv(dim)
    if name == 'attention':
        return Attention(dim)
    return RandomMixing(num_tokens)


class StarReLU(nn.Module):
    """``scale * relu(x) ** 2 + bias`` with learnable scalars."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float16 and \
                autocast_enabled(x.device.type):
            # fp16's square overflows once x passes 256. CUDA's autocast
            # runs the square in fp32 anyway, CPU's does not. The output
            # is fp32: feed it to a layer through fp16_safe.
            x = x.float()
        return self.scale * F.relu(x).square() + self.bias


#: fp16_safe brings its input's largest |value| under this (fp16's largest
#: finite value is 65504).
FP16_SAFE = 2.**14


def fp16_safe(layer: Callable, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for a linear, bias-free ``layer`` (any callable) whose
    input may exceed fp16's range, as StarReLU's output does.

    Under fp16 autocast it runs ``layer(x / k) * k`` with ``k`` the power of
    two (at least 1, so 1 for ordinary inputs) that brings the largest |x|
    under :data:`FP16_SAFE`: powers of two change exponents only, and the
    product by ``k`` is in fp32, so neither the input cast nor the layer's
    output overflows. Elsewhere it is ``layer(x)``.
    """
    device = x.device.type
    if not (autocast_enabled(device)
            and autocast_dtype(device) == torch.float16):
        return layer(x)
    peak = x.detach().abs().amax().float()
    k = torch.exp2(torch.ceil(torch.log2(peak / FP16_SAFE)).clamp_min(0))
    return layer(x / k) * k


def fp32_stream(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 under autocast, else as it is: a stage's input, so
    that its residual stream, norms, token mixers and scales run in fp32
    and only the convolutions, linear layers and attention in bf16/fp16.
    Autocast emits those in the low dtype and leaves pooling, subtraction
    and (on CPU) the norms in their input's dtype, where ``pool(x) - x``, a
    small difference of large numbers, loses most of its bits."""
    return x.float() if autocast_enabled(x.device.type) else x


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


#: The baselines' two kinds of norm: 'channel' (LayerNorm over channels)
#: and 'sample' (GroupNorm(1)). Blocks use them bias-free with eps 1e-6;
#: the output norms (which mmdet's and mmseg's necks read, and which
#: ImageNet checkpoints lack) are the same kind with a bias.
NORMS = dict(
    channel=dict(block=partial(ChannelNorm, bias=False),
                 output=dict(type='ChannelNorm', eps=1e-6)),
    sample=dict(block=SampleNorm, output=dict(type='GN', num_groups=1)))


class Mlp(nn.Module):
    """Two pointwise projections with an activation between them: 1x1
    convolutions on NCHW maps, linear layers on channels-last tokens.

    Args:
        dim (int): Channels in and out.
        hidden (int): Channels between.
        act (nn.Module): The activation.
        bias (bool): Projections with biases. Defaults to True.
        drop (float): Dropout after the activation and after the second
            projection. Defaults to 0.
        channels_last (bool): Inputs are ``[..., C]`` tokens.
            Defaults to False.
    """

    def __init__(self, dim: int, hidden: int, act: nn.Module,
                 bias: bool = True, drop: float = 0.,
                 channels_last: bool = False):
        super().__init__()
        layer = nn.Linear if channels_last else \
            partial(nn.Conv2d, kernel_size=1)
        self.fc1 = layer(dim, hidden, bias=bias)
        self.act = act
        self.fc2 = layer(hidden, dim, bias=bias)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        if isinstance(self.act, StarReLU):
            # a square: it can leave fp16's range where its input did not
            return self.drop(fp16_safe(self.fc2, x))
        return self.drop(self.fc2(x))


def stochastic_depth(rate: float) -> nn.Module:
    """Stochastic depth at ``rate`` (mmcv's), or nothing at rate 0."""
    return DropPath(rate) if rate > 0 else nn.Identity()


class MetaFormerBlock(nn.Module):
    """``x = RS1 * x + LS1 * mixer(norm1(x))``, then
    ``x = RS2 * x + LS2 * mlp(norm2(x))``, each branch with stochastic
    depth; a scale that is None is left out. The MetaFormer baselines'
    block: bias-free norms, a bias-free StarReLU MLP of ratio 4.

    Args:
        dim (int): Channels.
        token_mixer (nn.Module): The mixer, built for ``dim``.
        norm (str): A key of :data:`NORMS`: 'channel' or 'sample'.
        channels_last (bool): Inputs are ``[N, L, C]`` tokens, not maps.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float, optional): LayerScale init.
        res_scale_init_value (float, optional): ResScale init.
    """

    def __init__(self, dim: int, token_mixer: nn.Module, norm: str,
                 channels_last: bool, drop_path: float = 0.,
                 layer_scale_init_value: Optional[float] = None,
                 res_scale_init_value: Optional[float] = None):
        super().__init__()
        make_norm = NORMS[norm]['block']
        for i in (1, 2):
            self.add_module(f'norm{i}',
                            make_norm(dim, channels_last=channels_last))
            for name, value in (('layer_scale', layer_scale_init_value),
                                ('res_scale', res_scale_init_value)):
                self.add_module(
                    f'{name}{i}', nn.Identity() if value is None else
                    Scale(dim, value, channels_last))
        self.token_mixer = token_mixer
        self.mlp = Mlp(dim, 4 * dim, StarReLU(), bias=False,
                       channels_last=channels_last)
        self.drop_path = stochastic_depth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_scale1(x) + self.drop_path(
            self.layer_scale1(self.token_mixer(self.norm1(x))))
        return self.res_scale2(x) + self.drop_path(
            self.layer_scale2(self.mlp(self.norm2(x))))


class Stage(nn.Module):
    """A downsampling layer (or ``nn.Identity``) followed by blocks, on
    NCHW maps in and out; the blocks of a token stage see ``[N, HW, C]``.
    The blocks run on an fp32 residual stream under autocast (:meth:`enter`).
    Optional gradient checkpointing per block.

    Args:
        downsample (nn.Module): Applied first.
        blocks (Sequence[nn.Module]): Applied in order.
        channels_last (bool): The blocks take tokens. Defaults to False.
        with_cp (bool): Checkpoint each block in training.
            Defaults to False.
    """

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module],
                 channels_last: bool = False, with_cp: bool = False):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.channels_last = channels_last
        self.with_cp = with_cp

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        """The downsampled input, in fp32 under autocast (see
        :func:`fp32_stream`): every stage, of either generation, starts
        with this."""
        return fp32_stream(self.downsample(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.enter(x)
        if not self.channels_last:
            return self.run_blocks(x)
        n, c, h, w = x.shape
        x = self.run_blocks(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(n, c, h, w)

    def run_blocks(self, x: torch.Tensor,
                   apply: Optional[Callable] = None) -> torch.Tensor:
        """``apply(block, x)`` (by default ``block(x)``) for each block in
        turn, checkpointed with ``with_cp`` in training."""
        checkpoint = self.with_cp and self.training and \
            torch.is_grad_enabled()
        for block in self.blocks:
            fn = block if apply is None else partial(apply, block)
            if checkpoint:
                x = cp.checkpoint(fn, x, use_reentrant=False)
            else:
                x = fn(x)
        return x
