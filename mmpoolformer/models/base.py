"""What every MetaFormer backbone here shares with the others: its contract
with mmdet and mmseg (out_indices, frozen_stages, norm_eval, pretrained
weights, any input size)."""
import warnings
from numbers import Integral
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..torchapi import is_compiling, is_tracing
from ..weights import fit_backbone, load_pretrained
from .checks import check_number, watch_outputs


class DenseBackbone(BaseModule):
    """Base of four-stage backbones with outputs at strides 4, 8, 16, 32.

    It checks the arguments every such backbone takes and reads ``arch``
    (a row of the subclass's ``arch_settings`` table, or a dict of changes
    to its ``default_arch`` row). A subclass checks its own arguments, then
    calls :meth:`_build` with its stem and a function making each stage;
    :meth:`_build` builds the stages up to the last selected output, with
    stochastic depth rising linearly over all blocks, and one output norm
    ``norm{i}`` per selected output. :meth:`forward` returns those
    outputs, contiguous (NCHW) on every path.

    ``init_cfg`` may be a dict or a list of dicts, as for any mmengine
    module; a ``Pretrained`` entry (``checkpoint``, optional ``prefix`` and
    ``map_location``) is taken out in ``__init__`` and loads through
    :func:`~mmpoolformer.weights.load_pretrained` with the subclass's
    ``convert`` (the checkpoint layouts it reads), after mmengine has run
    the other entries. ``pretrained=PATH`` is mmseg's older form of the
    same (mmseg's ``EncoderDecoder`` passes it down).
    """

    num_stages = 4
    stem_stride = 4
    #: arch name -> the whole setting of that arch; a subclass's table.
    arch_settings: Dict[str, dict] = {}
    #: The row an arch dict changes; without one, an arch dict is whole
    #: but for ``arch_defaults``.
    default_arch: Optional[str] = None
    arch_defaults: dict = {}
    #: Keys an arch must have, and keys it may have besides.
    arch_required = ('depths', 'dims')
    arch_optional: Tuple[str, ...] = ()

    def __init__(self, arch, in_channels, out_indices, frozen_stages,
                 norm_eval, drop_path_rate, init_cfg=None, pretrained=None,
                 *, convert: Callable):
        init_cfg = self._with_pretrained(init_cfg, pretrained)
        self._pretrained, others = self._split_init_cfg(
            type(self).__name__, init_cfg)
        super().__init__(init_cfg=others)
        self._convert = convert
        self.arch = self._parse_arch(arch)
        self.depths, self.dims = self.arch['depths'], self.arch['dims']
        self.out_indices = self._parse_out_indices(out_indices)
        self._check_args(in_channels, frozen_stages, drop_path_rate)
        self.in_channels = in_channels
        self.frozen_stages = frozen_stages
        self.drop_path_rate = drop_path_rate
        self.norm_eval = norm_eval

    def _build(self, stem: nn.Module,
               make_stage: Callable[[int, List[float]], nn.Module],
               norm_cfg: dict) -> None:
        """Set ``stem``, the stages ``make_stage(i, drop_path_rates)`` up to
        the last selected output, and the output norms; then freeze."""
        self.stem = stem
        # Stages after the last output would hold parameters without
        # gradients (DDP's unused-parameter error), so they are not built.
        total = sum(self.depths)
        start = 0
        self.stages = nn.ModuleList()
        for i in range(max(self.out_indices) + 1):
            rates = [self.drop_path_rate * (start + j) / max(total - 1, 1)
                     for j in range(self.depths[i])]
            start += self.depths[i]
            self.stages.append(make_stage(i, rates))
        for i in self.out_indices:
            self.add_module(f'norm{i}',
                            build_norm_layer(norm_cfg, self.dims[i])[1])
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(self._pad_input(x))
        x, watched = watch_outputs(self, x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                # Plain NCHW, as every OpenMMLab backbone returns: the fast
                # path's blocks and the token stages run channels-last, and
                # mmcv's roi_align reads its input as NCHW whatever its
                # strides (a no-op on a contiguous map).
                outs.append(getattr(self, f'norm{i}')(x).contiguous())
        return watched(tuple(outs))

    def _pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` and pad it right/bottom to a multiple of the stem's
        stride (as mmdet's Swin does), so that output i is
        ceil(H / 2**(i + 2)) for any H: the stem alone would drop a row
        for some sizes. Other sizes are left untouched when run; traced or
        exported, the pad is always in the graph, its amounts computed from
        the input's shape, so that an exported model pads every size it is
        given, not the one it was traced at."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'{type(self).__name__} expects input of shape '
                f'[N, {self.in_channels}, H, W], got {list(x.shape)}')
        s = self.stem_stride
        pad_h, pad_w = -x.shape[2] % s, -x.shape[3] % s
        # Traced by TorchScript or fx (the ONNX exporters mmdeploy drives),
        # the amounts are graph values and testing them would fix the branch
        # taken at the traced size. Dynamo (torch.compile, torch.export)
        # guards the test on the symbolic size instead, so a compiled graph
        # holds the pad only where it pads.
        if (is_tracing() and not is_compiling()) or pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x

    #: Set once the first training forward has been watched
    #: (:func:`~.checks.watch_outputs`); a class default so that loaded
    #: models have it.
    _outputs_checked = False

    def _with_pretrained(self, init_cfg, pretrained):
        """``init_cfg`` with mmseg's older ``pretrained=PATH`` turned into
        its ``Pretrained`` entry (deprecated; both at once is an error)."""
        if pretrained is None:
            return init_cfg
        name = type(self).__name__
        if init_cfg is not None:
            raise ValueError(
                f'{name}: pretrained={pretrained!r} and init_cfg='
                f'{init_cfg!r} are both set; keep one (init_cfg='
                f"dict(type='Pretrained', checkpoint=...) is the current "
                f'form)')
        if not isinstance(pretrained, str):
            raise TypeError(f'{name}: pretrained must be a path or URL, '
                            f'got {pretrained!r}')
        warnings.warn(
            f"{name}: pretrained is deprecated, use init_cfg=dict(type="
            f"'Pretrained', checkpoint={pretrained!r})")
        return dict(type='Pretrained', checkpoint=pretrained)

    def _check_args(self, in_channels, frozen_stages, drop_path_rate):
        name = type(self).__name__
        if not (isinstance(frozen_stages, Integral)
                and -1 <= frozen_stages <= self.num_stages):
            raise ValueError(f'{name}: frozen_stages must be an int in -1..'
                             f'{self.num_stages}, got {frozen_stages!r}')
        if not (isinstance(in_channels, Integral) and in_channels > 0):
            raise ValueError(f'{name}: in_channels must be a positive int, '
                             f'got {in_channels!r}')
        check_number(name, 'drop_path_rate', drop_path_rate, 0, 1,
                     high_open=True)

    @classmethod
    def _parse_arch(cls, arch) -> dict:
        """The whole setting of ``arch``, checked: a row of
        ``arch_settings``, or a dict of changes to the ``default_arch``
        row (a whole setting where there is none)."""
        name = cls.__name__
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_settings:
                raise ValueError(
                    f'Unknown {name} arch {arch!r}; choose one of '
                    f'{sorted(cls.arch_settings)} or pass a dict')
            arch = cls.arch_settings[arch.lower()]
        elif not isinstance(arch, dict):
            raise TypeError(f'{name} needs arch, a str or dict; got {arch!r}')
        allowed = set(cls.arch_required) | set(cls.arch_optional)
        unknown = set(arch) - allowed
        base = cls.arch_defaults if cls.default_arch is None else \
            cls.arch_settings[cls.default_arch]
        arch = dict(base, **arch)
        missing = set(cls.arch_required) - set(arch)
        if missing or unknown:
            raise ValueError(
                f'{name} arch dict: missing keys {sorted(missing)}, unknown '
                f'keys {sorted(unknown)}; it takes '
                f'{sorted(cls.arch_required)} and optionally '
                f'{sorted(cls.arch_optional)}')
        for key in ('depths', 'dims'):
            value = arch[key]
            if not (isinstance(value, Sequence) and len(value) == 4 and all(
                    isinstance(v, Integral) and v > 0 for v in value)):
                raise ValueError(f'arch["{key}"] must be 4 positive ints, '
                                 f'got {value!r}')
        return cls._check_arch(dict(arch))

    @classmethod
    def _check_arch(cls, arch: dict) -> dict:
        """A subclass's checks of its own arch keys; returns the arch."""
        return arch

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

    @staticmethod
    def _split_init_cfg(name, init_cfg):
        """The ``Pretrained`` entry of ``init_cfg`` (None if there is none),
        checked, and the other entries (None if there are none)."""
        cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else \
            [] if init_cfg is None else [init_cfg]
        if not all(isinstance(c, dict) and 'type' in c for c in cfgs):
            raise TypeError(f'{name}: init_cfg must be a dict with "type" '
                            f'or a list of them, got {init_cfg!r}')
        found = [c for c in cfgs if c['type'] == 'Pretrained']
        if len(found) > 1:
            raise ValueError(f'{name}: init_cfg has {len(found)} Pretrained '
                             f'entries, at most one is allowed: {found}')
        if not found:
            return None, init_cfg
        extra = set(found[0]) - {'type', 'checkpoint', 'prefix',
                                 'map_location'}
        if 'checkpoint' not in found[0] or extra:
            raise ValueError(
                f'{name}: a Pretrained init_cfg takes "checkpoint" and '
                f'optionally "prefix" (and "map_location"), got '
                f'{found[0]}')
        others = [c for c in cfgs if c['type'] != 'Pretrained']
        return found[0], others or None

    def init_weights(self):
        """Run the other ``init_cfg`` entries (mmengine's way), then load
        the ``Pretrained`` checkpoint, if any, strictly."""
        super().init_weights()
        if self._pretrained is not None:
            path = self._pretrained['checkpoint']
            load_pretrained(self, path, self._convert,
                            prefix=self._pretrained.get('prefix'),
                            map_location=self._pretrained.get(
                                'map_location', 'cpu'))
            self._filled_by = path

    #: The ``init_cfg`` checkpoint this backbone's weights came from in this
    #: process (None: none yet). A later whole-model load with no tensor
    #: for it (``load_from`` another detector) then keeps them.
    _filled_by: Optional[str] = None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Every ``load_state_dict`` of a model holding this backbone
        (torch's or mmengine's, so ``load_from``, ``resume``,
        ``init_detector``, ``init_model`` and the inferencers) passes here
        with the whole state dict under ``prefix`` (e.g. ``backbone.``)
        before the children load. Its keys are renamed in place from any
        layout ``convert`` reads (the authors' mmdet/mmseg releases:
        ``patch_embed``, ``network.*``, ``norm{0,2,4,6}``) to ours, and
        every tensor of this backbone must be there at its shape:
        :func:`~mmpoolformer.weights.fit_backbone` raises otherwise, as
        mmengine's non-strict load would only log it and leave the
        backbone random. Two exceptions, logged, and left to the caller's
        ``strict``: an ImageNet file loads without output norms, and when
        ``init_cfg`` filled this backbone, a file with no tensor for it
        (another architecture's backbone, or none) leaves it as it is."""
        keys = [k for k in state_dict if k.startswith(prefix)]
        state = {k[len(prefix):]: state_dict.pop(k) for k in keys}
        fitted = fit_backbone(self, state, self._convert, prefix,
                              kept=self._filled_by)
        state_dict.update({prefix + k: v for k, v in fitted.items()})
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def get_layer_depth(self, param_name: str, prefix: str = '',
                        decay_type: str = 'layer_wise',
                        num_layers: Optional[int] = None) -> Tuple[int, int]:
        """The layer id of parameter ``param_name`` for learning rates that
        decay with depth, and the number of ids (``num_layers + 2``), as
        mmpretrain's ``ConvNeXt.get_layer_depth`` answers; the ids are those
        mmseg gives ConvNeXt's parameters.

        Names that do not start with ``prefix`` (necks, heads) and the
        output norms ``norm{i}`` get the last id, ``num_layers + 1``; the
        stem 0. 'layer_wise': stage 0 is 1, stage 1 is 2, stage 2 counts
        3, 4, ... per three blocks, stage 3 is ``num_layers``; a stage's
        downsampling shares its first blocks' id. 'stage_wise': stage i is
        i + 1 and every downsampling layer is 0. ``num_layers`` defaults to
        ``3 + ceil(depths[2] / 3)`` (mmseg's 6 for ConvNeXt-T, 12 for -S/B).
        """
        if decay_type not in ('layer_wise', 'stage_wise'):
            raise ValueError(f"decay_type must be 'layer_wise' or "
                             f"'stage_wise', got {decay_type!r}")
        if num_layers is None:
            num_layers = 3 - (-self.depths[2] // 3)
        total = num_layers + 2
        if not param_name.startswith(prefix):
            return num_layers + 1, total
        name = param_name[len(prefix):]
        parts = name.split('.')
        if parts[0].startswith('norm') and parts[0][4:].isdigit():
            # mmseg gives ConvNeXt's output norms the head's rate too
            return num_layers + 1, total
        if parts[0] == 'stem':
            return 0, total
        stage = int(parts[1]) if parts[0] == 'stages' and len(parts) > 3 \
            and parts[1].isdigit() else None
        down = stage is not None and parts[2] == 'downsample'
        block = stage is not None and parts[2] == 'blocks' and \
            parts[3].isdigit()
        if not (down or block) or stage >= len(self.stages):
            raise ValueError(
                f'{param_name!r} is not a parameter of this '
                f'{type(self).__name__} ({prefix}stem.*, '
                f'{prefix}stages.{{i}}.downsample.*, '
                f'{prefix}stages.{{i}}.blocks.{{j}}.*, {prefix}norm{{i}}.*)')
        if decay_type == 'stage_wise':
            return (0 if down else stage + 1), total
        if stage == 3:
            return num_layers, total
        if down:
            return (0, 2, 3)[stage], total
        lid = (1, 2, 3 + int(parts[3]) // 3)[stage]
        if lid > num_layers:
            raise ValueError(
                f'num_layers={num_layers} is too small for {param_name!r}: '
                f"its layer id {lid} is above stage 3's ({num_layers}); "
                f'layer_wise needs num_layers >= 3 + (blocks in stage 2 - '
                f'1) // 3')
        return lid, total

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
