"""PoolFormer backbone for dense prediction (Yu et al., CVPR 2022)."""
from numbers import Integral
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath

from ..registry import register_everywhere
from . import fused as fast
from .base import DenseBackbone, check_number


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


class Mlp(nn.Module):
    """Two 1x1 convolutions with an activation between them."""

    def __init__(self, dim: int, hidden: int, act_cfg: dict, drop: float):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class PoolFormerBlock(nn.Module):
    """One MetaFormer block with a pooling token mixer.

    ``x + LS1 * (pool(norm1(x)) - norm1(x))`` then ``x + LS2 * mlp(norm2(x))``,
    each branch with stochastic depth. ``forward(x, fused=True)`` runs the
    same function through :func:`.fused.block_forward` (GroupNorm(1) only).
    """

    def __init__(self,
                 dim: int,
                 pool_size: int = 3,
                 mlp_ratio: float = 4.,
                 norm_cfg: dict = dict(type='GN', num_groups=1),
                 act_cfg: dict = dict(type='GELU'),
                 drop: float = 0.,
                 drop_path: float = 0.,
                 layer_scale_init_value: float = 1e-5):
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, dim)[1]
        self.token_mixer = Pooling(pool_size)
        self.norm2 = build_norm_layer(norm_cfg, dim)[1]
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_cfg, drop)
        self.layer_scale1 = nn.Parameter(
            torch.full((dim, ), float(layer_scale_init_value)))
        self.layer_scale2 = nn.Parameter(
            torch.full((dim, ), float(layer_scale_init_value)))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        if fused:
            return fast.block_forward(self, x)
        ls1 = self.layer_scale1.view(-1, 1, 1)
        ls2 = self.layer_scale2.view(-1, 1, 1)
        x = x + self.drop_path(ls1 * self.token_mixer(self.norm1(x)))
        return x + self.drop_path(ls2 * self.mlp(self.norm2(x)))


class PoolFormerStage(nn.Module):
    """An optional stride-2 downsampling conv followed by blocks, with
    optional gradient checkpointing per block."""

    def __init__(self, in_dim: int, dim: int, blocks: Sequence[nn.Module],
                 with_cp: bool = False):
        super().__init__()
        self.downsample = nn.Conv2d(in_dim, dim, 3, 2, 1) \
            if in_dim is not None else nn.Identity()
        self.blocks = nn.ModuleList(blocks)
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        x = self.downsample(x)
        if torch.is_autocast_enabled(x.device.type):
            # The residual stream in fp32 under autocast: the convs emit
            # bf16/fp16, and autocast leaves GroupNorm and the pooling in
            # their input's dtype, where pool(x) - x, a small difference of
            # large numbers, loses most of its bits.
            x = x.float()
        checkpoint = self.with_cp and self.training and \
            torch.is_grad_enabled()
        for block in self.blocks:
            if checkpoint:
                x = cp.checkpoint(block, x, fused, use_reentrant=False)
            else:
                x = block(x, fused)
        return x


@register_everywhere
class PoolFormer(DenseBackbone):
    """PoolFormer backbone returning multi-scale features.

    `MetaFormer Is Actually What You Need for Vision
    <https://arxiv.org/abs/2111.11418>`_.

    A 7x7 stride-4 stem, then four stages of PoolFormer blocks at strides
    4, 8, 16 and 32, each after the first starting with a 3x3 stride-2 conv.
    The output of every selected stage goes through its own norm layer.
    Any input size works: output i is ceil(H / 2**(i+2)) x ceil(W / 2**(i+2)).

    Args:
        arch (str | dict): One of ``PoolFormer.arch_settings`` ('s12', 's24',
            's36', 'm36', 'm48'), or a dict with ``depths`` (blocks per stage,
            4 ints), ``dims`` (channels per stage, 4 ints) and optionally
            ``layer_scale_init_value``. Defaults to 's12'.
        in_channels (int): Channels of the input image. Defaults to 3.
        pool_size (int): Kernel size of the pooling token mixer (odd).
            Defaults to 3.
        mlp_ratio (float): Hidden width of the MLP relative to the stage's
            dim. Defaults to 4.
        out_indices (Sequence[int]): Stages whose outputs are returned,
            0..3 for strides 4/8/16/32. Only these stages get an output norm,
            and stages after the last one are not built, so every parameter
            receives a gradient. Defaults to (0, 1, 2, 3).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k >= 1 the stem
            and stages 0..k-1 (their params stop requiring grad and they stay
            in eval mode). Defaults to -1.
        norm_eval (bool): Keep batch-norm layers (if ``norm_cfg`` uses them)
            in eval mode during training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block, trading compute
            for memory. Defaults to False.
        fused (bool | str): Whether blocks run the fast path
            (:mod:`mmpoolformer.models.fused`) on channels-last maps: the
            same function (fp32 differences ~1e-6), fewer passes over
            memory, a hand-written backward. 'auto' runs it where it is
            faster (CPU training at batch >= 2 with >= 1.5M input pixels,
            i.e. detection's batches), True wherever it can run,
            False never. It never runs under tracing, export, FLOP
            counting, ``torch.compile`` or autocast, and needs GroupNorm(1)
            norms. Defaults to 'auto'.
        torch_compile (bool | dict): Compile the backbone with
            ``torch.compile`` (a dict is passed as its options, e.g.
            ``dict(dynamic=True)``). Compiled blocks run op by op, which
            inductor fuses; the forward has no graph breaks.
            Defaults to False.
        drop_rate (float): Dropout in the MLPs. Defaults to 0.
        drop_path_rate (float): Stochastic depth of the last block; it rises
            linearly from 0 over all blocks. Defaults to 0.
        layer_scale_init_value (float, optional): Overrides the arch's
            LayerScale init value. Defaults to None.
        norm_cfg (dict): Norm layer of the blocks and outputs. Defaults to
            GroupNorm with one group (the paper's "modified layer norm").
        act_cfg (dict): MLP activation. Defaults to ``dict(type='GELU')``.
        init_cfg (dict | list[dict], optional): ``dict(type='Pretrained',
            checkpoint=PATH_OR_URL)`` (optionally with ``prefix``) loads the
            official, mmpretrain, timm or mmpoolformer weights strictly (see
            :mod:`mmpoolformer.weights`); other entries (``Kaiming``, ...)
            run first. Defaults to None.
        pretrained (str, optional): Deprecated (mmseg's older form):
            the same as a ``Pretrained`` ``init_cfg``. Defaults to None.
    """

    arch_settings: Dict[str, dict] = {
        's12': dict(depths=(2, 2, 6, 2), dims=(64, 128, 320, 512),
                    layer_scale_init_value=1e-5),
        's24': dict(depths=(4, 4, 12, 4), dims=(64, 128, 320, 512),
                    layer_scale_init_value=1e-5),
        's36': dict(depths=(6, 6, 18, 6), dims=(64, 128, 320, 512),
                    layer_scale_init_value=1e-6),
        'm36': dict(depths=(6, 6, 18, 6), dims=(96, 192, 384, 768),
                    layer_scale_init_value=1e-6),
        'm48': dict(depths=(8, 8, 24, 8), dims=(96, 192, 384, 768),
                    layer_scale_init_value=1e-6),
    }

    def __init__(self,
                 arch: Union[str, dict] = 's12',
                 in_channels: int = 3,
                 pool_size: int = 3,
                 mlp_ratio: float = 4.,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 fused: Union[bool, str] = 'auto',
                 torch_compile: Union[bool, dict] = False,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = None,
                 norm_cfg: dict = dict(type='GN', num_groups=1),
                 act_cfg: dict = dict(type='GELU'),
                 init_cfg: Union[dict, list] = None,
                 pretrained: str = None):
        super().__init__(in_channels, out_indices, frozen_stages, norm_eval,
                         init_cfg, pretrained)
        arch = self._parse_arch(arch)
        self.depths, self.dims = arch['depths'], arch['dims']
        if layer_scale_init_value is None:
            layer_scale_init_value = arch.get('layer_scale_init_value', 1e-5)
        name = type(self).__name__
        check_number(name, 'layer_scale_init_value', layer_scale_init_value,
                     0, low_open=True)
        check_number(name, 'mlp_ratio', mlp_ratio, 0, low_open=True)
        check_number(name, 'drop_rate', drop_rate, 0, 1, high_open=True)
        check_number(name, 'drop_path_rate', drop_path_rate, 0, 1,
                     high_open=True)
        if not (isinstance(pool_size, Integral) and pool_size > 0
                and pool_size % 2 == 1):
            raise ValueError(
                f'pool_size must be a positive odd int, got {pool_size!r}')
        self.dropout = drop_rate

        self.stem = nn.Conv2d(in_channels, self.dims[0], 7, 4, 2)
        # Stages after the last output would hold parameters without
        # gradients (DDP's unused-parameter error), so they are not built.
        num_built = max(self.out_indices) + 1
        total = sum(self.depths)
        start = 0
        self.stages = nn.ModuleList()
        for i in range(num_built):
            blocks = []
            for j in range(self.depths[i]):
                rate = drop_path_rate * (start + j) / max(total - 1, 1)
                blocks.append(
                    PoolFormerBlock(
                        self.dims[i], pool_size, mlp_ratio, norm_cfg,
                        act_cfg, drop_rate, rate, layer_scale_init_value))
            start += self.depths[i]
            in_dim = self.dims[i - 1] if i > 0 else None
            self.stages.append(
                PoolFormerStage(in_dim, self.dims[i], blocks, with_cp))
        for i in self.out_indices:
            self.add_module(f'norm{i}',
                            build_norm_layer(norm_cfg, self.dims[i])[1])
        if not any(fused is m for m in fast.MODES):
            raise ValueError(f'fused must be one of {fast.MODES}, got '
                             f'{fused!r}')
        # The fast path folds GroupNorm(1)'s affine into its neighbours.
        norm = self.stages[0].blocks[0].norm1
        gn1 = isinstance(norm, nn.GroupNorm) and norm.num_groups == 1 and \
            norm.affine
        self.fused = fused if gn1 else False
        self._freeze_stages()
        if torch_compile:
            self.compile(**(torch_compile if isinstance(torch_compile, dict)
                            else {}))

    @classmethod
    def _parse_arch(cls, arch) -> dict:
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_settings:
                raise ValueError(
                    f'Unknown PoolFormer arch {arch!r}; choose one of '
                    f'{sorted(cls.arch_settings)} or pass a dict with '
                    f'"depths" and "dims".')
            return cls.arch_settings[arch.lower()]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or dict, got {arch!r}')
        allowed = {'depths', 'dims', 'layer_scale_init_value'}
        if not {'depths', 'dims'} <= set(arch) or set(arch) - allowed:
            raise ValueError(
                f'arch dict must have keys "depths" and "dims" (and '
                f'optionally "layer_scale_init_value"), got {sorted(arch)}')
        cls._check_sizes(arch)
        return dict(arch)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self._pad_input(x)
        fused = fast.applies(self.fused, x, self.training, self.dropout)
        if fused:
            # convs then emit channels-last maps, which the fused blocks
            # read as [N, HW, C] matrices without copies
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x, fused)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x))
        return tuple(outs)
