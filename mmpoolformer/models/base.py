"""What every MetaFormer backbone here shares with the others: its contract
with mmdet and mmseg (out_indices, frozen_stages, norm_eval, pretrained
weights, any input size)."""
from numbers import Integral
from typing import Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..weights import load_pretrained


class DenseBackbone(BaseModule):
    """Base of four-stage backbones with outputs at strides 4, 8, 16, 32.

    A subclass builds ``self.stem``, ``self.stages`` (only up to the last
    selected output) and one ``norm{i}`` per selected output, then calls
    :meth:`_freeze_stages`.
    """

    num_stages = 4
    stem_stride = 4

    def __init__(self, in_channels, out_indices, frozen_stages, norm_eval,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        self.out_indices = self._parse_out_indices(out_indices)
        if not (isinstance(frozen_stages, Integral)
                and -1 <= frozen_stages <= self.num_stages):
            raise ValueError(f'{name}: frozen_stages must be an int in -1..'
                             f'{self.num_stages}, got {frozen_stages!r}')
        if not (isinstance(in_channels, Integral) and in_channels > 0):
            raise ValueError(f'{name}: in_channels must be a positive int, '
                             f'got {in_channels!r}')
        self.in_channels = in_channels
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

    @classmethod
    def _parse_out_indices(cls, out_indices) -> Tuple[int, ...]:
        if isinstance(out_indices, Integral):
            out_indices = (out_indices, )
        valid = (isinstance(out_indices, (list, tuple))
                 and len(out_indices) > 0
                 and all(isinstance(i, Integral) for i in out_indices))
        if valid:
            valid = (all(0 <= i < cls.num_stages for i in out_indices)
                     and len(set(out_indices)) == len(out_indices))
        if not valid:
            raise ValueError(
                f'out_indices must be distinct stage indices in 0..'
                f'{cls.num_stages - 1}, got {out_indices!r}')
        return tuple(sorted(int(i) for i in out_indices))

    def init_weights(self):
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            load_pretrained(self, cfg['checkpoint'])
            self._is_init = True
        else:
            super().init_weights()

    def _freeze_stages(self):
        frozen = []
        if self.frozen_stages >= 0:
            frozen.append(self.stem)
        for i in range(min(self.frozen_stages, len(self.stages))):
            frozen.append(self.stages[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f'norm{i}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def _pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` and pad it right/bottom to a multiple of the stem's
        stride (as mmdet's Swin does), so that output i is
        ceil(H / 2**(i + 2)) for any H: the stem alone would drop a row
        for some sizes. Other sizes are left untouched."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'{type(self).__name__} expects input of shape '
                f'[N, {self.in_channels}, H, W], got {list(x.shape)}')
        s = self.stem_stride
        pad_h, pad_w = -x.shape[2] % s, -x.shape[3] % s
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x
