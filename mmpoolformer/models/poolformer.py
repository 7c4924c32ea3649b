"""PoolFormer backbone for dense prediction (Yu et al., CVPR 2022)."""
from functools import partial
from numbers import Integral
from typing import Dict, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer

from ..registry import register_everywhere
from ..torchapi import compile_module
from ..weights import convert
from . import fused as fast
from .base import DenseBackbone
from .checks import check_number
from .layers import Mlp, Pooling, Stage, stochastic_depth
from .sizes import POOLFORMER_SIZES


class PoolFormerBlock(nn.Module):
    """One MetaFormer block with a pooling token mixer.

    ``x + LS1 * (pool(norm1(x)) - norm1(x))`` then ``x + LS2 * mlp(norm2(x))``,
    each branch with stochastic depth. :meth:`fused_forward` runs the same
    function through :func:`.fused.block_forward` (GroupNorm(1) norms with
    affine and a GELU MLP only).
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
        self.mlp = Mlp(dim, int(dim * mlp_ratio),
                       build_activation_layer(act_cfg), drop=drop)
        self.layer_scale1 = nn.Parameter(
            torch.full((dim, ), float(layer_scale_init_value)))
        self.layer_scale2 = nn.Parameter(
            torch.full((dim, ), float(layer_scale_init_value)))
        self.drop_path = stochastic_depth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ls1 = self.layer_scale1.view(-1, 1, 1)
        ls2 = self.layer_scale2.view(-1, 1, 1)
        x = x + self.drop_path(ls1 * self.token_mixer(self.norm1(x)))
        return x + self.drop_path(ls2 * self.mlp(self.norm2(x)))

    def fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` through the fast path; the result is
        channels-last."""
        prob = getattr(self.drop_path, 'drop_prob', 0.) \
            if self.training else 0.
        # drawn as mmcv's drop_path draws them, branch 1 then branch 2
        keep1, keep2 = fast.keep_factor(prob, x), fast.keep_factor(prob, x)
        n1, n2, mlp = self.norm1, self.norm2, self.mlp
        return fast.block_forward(
            x, (n1.weight, n1.bias, n1.eps), self.layer_scale1,
            (n2.weight, n2.bias, n2.eps), (mlp.fc1.weight, mlp.fc1.bias),
            (mlp.fc2.weight, mlp.fc2.bias), self.layer_scale2,
            self.token_mixer.pool_size, keep1, keep2)


class PoolFormerStage(Stage):
    """:class:`~.layers.Stage` of PoolFormer blocks that chooses, once per
    forward, whether its blocks run the fast path (:func:`.fused.applies`
    for ``fused``, the backbone's mode). ``ran_fast`` says what its last
    eager forward ran (None before the first). ``returned``: the backbone
    returns this stage's output (converted to NCHW)."""

    def __init__(self, downsample: nn.Module,
                 blocks: Sequence[PoolFormerBlock], with_cp: bool,
                 fused: Union[bool, str], dropout: float,
                 returned: bool = True):
        super().__init__(downsample, blocks, with_cp=with_cp)
        self.fused = fused
        self.dropout = dropout
        self.returned = returned
        self.ran_fast = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.enter(x)
        if self.runs_fast(x):
            # the fused blocks read a channels-last map as an [N*HW, C]
            # matrix without copies, and emit channels-last maps
            x = x.contiguous(memory_format=torch.channels_last)
            return self.run_blocks(x, PoolFormerBlock.fused_forward)
        return self.run_blocks(x)

    def runs_fast(self, x: torch.Tensor) -> bool:
        """Whether this forward's blocks take the fast path
        (:func:`.fused.applies`; 'auto' measures with
        :func:`.fused.stage_key` and :func:`.fused.time_stage`), noted in
        ``ran_fast``."""
        use = fast.applies(self.fused, x, self.training, self.dropout,
                           partial(fast.stage_key, self, x),
                           partial(fast.time_stage, self, x))
        if not fast._tracing():  # a tracer would record the assignment
            self.ran_fast = use
        return use


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
        arch (str | dict): A row of ``PoolFormer.arch_settings`` ('s12',
            's24', 's36', 'm36', 'm48'), or a dict of changes to the 's12'
            row: ``depths`` (blocks per stage, 4 ints), ``dims`` (channels
            per stage, 4 ints), ``layer_scale_init_value``.
            Defaults to 's12'.
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
            (:mod:`mmpoolformer.models.fused`) on channels-last maps (the
            outputs are contiguous NCHW on every path): the same function
            (fp32 differences ~1e-6), fewer passes over memory, a
            hand-written backward. 'auto' runs it where it was
            measured faster: each stage times both paths on its first
            input of each size class, device, dtype and grad mode, and
            keeps the choice (:func:`.fused.decide`; the environment
            variable ``MMPOOLFORMER_AUTO=fast|plain`` pins it). True
            runs it wherever it can run, False never. It never runs under
            tracing, export, FLOP counting, ``torch.compile`` or autocast.
            It needs GroupNorm(1) norms with affine and a GELU MLP: with
            other ``norm_cfg`` or ``act_cfg``, 'auto' means False and True
            is an error.
            Defaults to 'auto'.
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

    #: The sizes PoolFormerV2, IdentityFormer and RandFormer share, with
    #: PoolFormer's LayerScale init (:mod:`.sizes`).
    arch_settings: Dict[str, dict] = {
        name: dict(depths=depths, dims=dims, layer_scale_init_value=scale)
        for name, (depths, dims, scale) in POOLFORMER_SIZES.items()}

    default_arch = 's12'
    arch_optional = ('layer_scale_init_value', )

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
        super().__init__(arch, in_channels, out_indices, frozen_stages,
                         norm_eval, drop_path_rate, init_cfg, pretrained,
                         convert=convert)
        if layer_scale_init_value is None:
            layer_scale_init_value = self.arch['layer_scale_init_value']
        name = type(self).__name__
        check_number(name, 'layer_scale_init_value', layer_scale_init_value,
                     0, low_open=True)
        check_number(name, 'mlp_ratio', mlp_ratio, 0, low_open=True)
        check_number(name, 'drop_rate', drop_rate, 0, 1, high_open=True)
        if not (isinstance(pool_size, Integral) and pool_size > 0
                and pool_size % 2 == 1):
            raise ValueError(
                f'pool_size must be a positive odd int, got {pool_size!r}')
        self._no_fast_path = _why_not_fast(norm_cfg, act_cfg)
        self._fused = self._check_fused(fused)

        def stage(i, drop_path_rates):
            dim = self.dims[i]
            blocks = [PoolFormerBlock(dim, pool_size, mlp_ratio, norm_cfg,
                                      act_cfg, drop_rate, rate,
                                      layer_scale_init_value)
                      for rate in drop_path_rates]
            down = nn.Conv2d(self.dims[i - 1], dim, 3, 2, 1) if i else \
                nn.Identity()
            return PoolFormerStage(down, blocks, with_cp, self._fused,
                                   drop_rate, i in self.out_indices)

        self._build(nn.Conv2d(in_channels, self.dims[0], 7, 4, 2), stage,
                    norm_cfg)
        if torch_compile:
            compile_module(self, **(torch_compile if isinstance(
                torch_compile, dict) else {}))

    @property
    def fused(self) -> Union[bool, str]:
        """The fast-path mode of every stage (see the class's ``fused``
        argument); settable."""
        return self._fused

    @fused.setter
    def fused(self, mode: Union[bool, str]) -> None:
        self._fused = self._check_fused(mode)
        for stage in self.stages:
            stage.fused = self._fused

    def _check_fused(self, mode):
        """``mode``, or False for 'auto' where the fast path cannot run."""
        if not any(mode is m for m in fast.MODES):
            raise ValueError(f'fused must be one of {fast.MODES}, got '
                             f'{mode!r}')
        if mode is True and self._no_fast_path:
            raise ValueError(
                f'fused=True: the fast path runs GroupNorm(1) norms with '
                f'affine and a GELU MLP, got {self._no_fast_path}; use '
                f"fused='auto' or False")
        return False if self._no_fast_path else mode


def _why_not_fast(norm_cfg: dict, act_cfg: dict) -> str:
    """The settings that keep the fast path from computing these blocks
    ('' if none): it folds GroupNorm(1)'s affine into its neighbours and
    runs GELU."""
    gn1 = norm_cfg.get('type') in ('GN', 'GroupNorm') and \
        norm_cfg.get('num_groups') == 1 and norm_cfg.get('affine', True)
    gelu = act_cfg.get('type') == 'GELU' and \
        act_cfg.get('approximate', 'none') == 'none'
    return ' and '.join(f'{key}={cfg!r}' for key, cfg, ok in (
        ('norm_cfg', norm_cfg, gn1), ('act_cfg', act_cfg, gelu)) if not ok)
