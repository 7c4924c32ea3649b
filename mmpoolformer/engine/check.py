"""A detector or segmentor whose feature pyramid and heads disagree stops at
its first training iteration, naming what disagrees, instead of training
for 12 epochs on the wrong grid.

Two mistakes train silently with finite losses: a neck that reads the
backbone from the wrong level (mmdet's stock RetinaNet FPN keeps
``start_level=1``, so backbone outputs at strides 8-32 become a pyramid at
16-256 while the anchors assume 8-128), and a backbone output that nothing
reads (its norm gets no gradient: an error under DDP without
``find_unused_parameters``, one iteration later and without naming it).
"""
import math
import re

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

from ..models.base import DenseBackbone
from ..models.checks import unused_outputs_message


class PyramidError(RuntimeError):
    """The feature pyramid and the heads disagree, or backbone parameters
    get no gradient."""


def _sizes(feats):
    """(H, W) of each map in a tensor or a (nested) list/tuple of them."""
    if isinstance(feats, (list, tuple)):
        return [s for f in feats for s in _sizes(f)]
    return [tuple(feats.shape[-2:])]


def _named(owner, module):
    """(name, module) for ``module``, or for each item of a ModuleList
    (cascade RoI heads, several auxiliary heads); [] for None."""
    if module is None:
        return []
    if isinstance(module, nn.ModuleList):
        return [(f'{owner}.{i}', m) for i, m in enumerate(module)]
    return [(owner, module)]


def head_strides(model):
    """What the heads assume of the features they read, as a list of
    (owner, level indices, [(stride_h, stride_w), ...]): mmdet's prior
    generators (anchor and point heads, RPN), RoI extractors and mmseg's
    heads with ``feature_strides`` (Semantic FPN)."""
    found = []
    for name in ('rpn_head', 'bbox_head'):
        gen = getattr(getattr(model, name, None), 'prior_generator', None)
        strides = getattr(gen, 'strides', None)
        if strides is not None:
            # mmdet stores (stride_w, stride_h) pairs.
            found.append((f'{name}.prior_generator',
                          list(range(len(strides))),
                          [(s[1], s[0]) for s in strides]))
    roi_head = getattr(model, 'roi_head', None)
    for name in ('bbox_roi_extractor', 'mask_roi_extractor'):
        for owner, ext in _named(f'roi_head.{name}',
                                 getattr(roi_head, name, None)):
            strides = getattr(ext, 'featmap_strides', None)
            if strides is not None:
                found.append((owner, list(range(len(strides))),
                              [(s, s) for s in strides]))
    for name in ('decode_head', 'auxiliary_head'):
        for owner, head in _named(name, getattr(model, name, None)):
            strides = getattr(head, 'feature_strides', None)
            if strides is not None:
                index = head.in_index
                index = list(index) if isinstance(index, (list, tuple)) \
                    else [index]
                found.append((owner, index, [(s, s) for s in strides]))
    return found


def _about(size, sizes):
    """The power-of-two strides that map ``size`` to ``sizes`` (for
    messages: small maps make them approximate)."""
    side = 0 if size[0] >= size[1] else 1
    return ', '.join(
        str(2 ** round(math.log2(size[side] / s[side]))) for s in sizes)


def _fmt(sizes):
    return ', '.join(f'{h}x{w}' for h, w in sizes)


def pyramid_problems(model, input_size, backbone_sizes, feature_sizes):
    """What is wrong between the features the heads read and the strides
    they assume, as a list of messages (empty when nothing is).

    ``input_size`` is the (H, W) of the batch the backbone read,
    ``backbone_sizes`` the (H, W) of its outputs and ``feature_sizes``
    those of the maps the heads read (the neck's outputs, or the
    backbone's without a neck). A map at stride s of an H x W batch is
    ceil(H / s) x ceil(W / s), as strided convs and pools make it.
    """
    h, w = input_size
    problems = []
    for owner, index, strides in head_strides(model):
        if max(index) >= len(feature_sizes) or len(index) != len(strides):
            problems.append(
                f'{owner} assumes {len(strides)} levels at strides '
                f'{", ".join(str(s[0]) for s in strides)} (levels {index}), '
                f'but the heads get {len(feature_sizes)} maps')
            continue
        got = [feature_sizes[i] for i in index]
        want = [(math.ceil(h / sh), math.ceil(w / sw)) for sh, sw in strides]
        if got != want:
            problems.append(
                f'{owner} assumes strides '
                f'{", ".join(str(s[0]) for s in strides)}, i.e. maps of '
                f'{_fmt(want)} for this {h}x{w} batch, but the maps it '
                f'reads are {_fmt(got)} (strides about '
                f'{_about(input_size, got)})')
    levels = getattr(model, 'num_feature_levels', None)
    if levels is not None and levels != len(feature_sizes):
        problems.append(
            f'num_feature_levels={levels}, but the heads get '
            f'{len(feature_sizes)} maps')
    if problems:
        backbone = getattr(model, 'backbone', None)
        out = getattr(backbone, 'out_indices', None)
        neck = getattr(model, 'neck', None)
        hint = (f'The backbone outputs {_fmt(backbone_sizes)} (strides about '
                f'{_about(input_size, backbone_sizes)}'
                + (f', out_indices={tuple(out)}' if out is not None else '')
                + ')')
        if neck is not None:
            hint += f'; the neck is {type(neck).__name__}' + ''.join(
                f', {k}={getattr(neck, k)}' for k in
                ('start_level', 'backbone_end_level', 'num_outs')
                if hasattr(neck, k))
        problems.append(hint + '.')
    return problems


@HOOKS.register_module()
class PyramidCheckHook(Hook):
    """After the first training iteration (of each run, resumed ones
    included), stop with :class:`PyramidError` if

    - a head's priors or RoI extractors (mmdet) or ``feature_strides``
      (mmseg's Semantic FPN) assume strides other than those of the maps it
      reads, measured on that iteration's batch; or
    - a backbone parameter that requires grad received no gradient in that
      iteration's backward, naming each such parameter.

    Otherwise it logs what it checked. The gradients are recorded by tensor
    hooks, because the optimizer wrapper has already zeroed ``.grad`` (to
    None) when ``after_train_iter`` runs.
    """

    priority = 'VERY_HIGH'

    def __init__(self):
        self._done = False
        self._handles = []

    def _remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self._done:
            return
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        backbone = getattr(model, 'backbone', None)
        if backbone is None:
            self._done = True
            print_log(f'PyramidCheckHook: {type(model).__name__} has no '
                      f'backbone; nothing to check', logger='current')
            return
        self._model = model
        self._seen = dict(input=None, backbone=None, features=None)
        self._grads = set()
        self._params = {f'backbone.{n}': p
                        for n, p in backbone.named_parameters()
                        if p.requires_grad}

        def grabbed(name, hook_fn):
            def grab(module, args, output=None):
                if self._seen[name] is None:
                    self._seen[name] = hook_fn(args, output)
            return grab

        self._handles.append(backbone.register_forward_pre_hook(
            grabbed('input', lambda args, _: tuple(args[0].shape[-2:]))))
        self._handles.append(backbone.register_forward_hook(
            grabbed('backbone', lambda _, out: _sizes(out))))
        neck = getattr(model, 'neck', None)
        if neck is not None:
            self._handles.append(neck.register_forward_hook(
                grabbed('features', lambda _, out: _sizes(out))))
        for name, param in self._params.items():
            self._handles.append(param.register_hook(
                lambda grad, name=name: self._grads.add(name)))

    @staticmethod
    def _unused_outputs(backbone, missing):
        """The message for our backbone's outputs whose norm got no
        gradient (the backbone's own warning's); their parameters are
        taken out of ``missing``."""
        if not isinstance(backbone, DenseBackbone):
            return []
        norms = {int(m.group(1)) for m in (
            re.match(r'backbone\.norm(\d+)\.', n) for n in missing) if m}
        if not norms:
            return []
        missing[:] = [n for n in missing if not any(
            n.startswith(f'backbone.norm{i}.') for i in norms)]
        return [unused_outputs_message(
            type(backbone).__name__, backbone.out_indices, sorted(norms),
            backbone.stem_stride)]

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self._done:
            return
        self._done = True
        self._remove()
        seen, model = self._seen, self._model
        if seen['features'] is None:
            seen['features'] = seen['backbone']
        problems = []
        if seen['input'] is not None:
            problems += pyramid_problems(model, seen['input'],
                                         seen['backbone'], seen['features'])
        missing = [n for n in self._params if n not in self._grads]
        problems += self._unused_outputs(model.backbone, missing)
        if missing:
            problems.append(
                f'{len(missing)} backbone parameters received no gradient: '
                f'{", ".join(missing)}. Usually nothing reads the output '
                f"they belong to: check the backbone's out_indices against "
                f"the neck's in_channels and start_level. Under DDP such "
                f'parameters need find_unused_parameters=True')
        checked = [owner for owner, _, _ in head_strides(model)]
        del self._model, self._params
        if problems:
            raise PyramidError(
                f'Iteration {runner.iter + 1}: the feature pyramid and the '
                f'heads disagree:\n- ' + '\n- '.join(problems))
        print_log(f'PyramidCheckHook: strides match '
                  f'({", ".join(checked) or "no head states strides"}); '
                  f'every backbone parameter received a gradient',
                  logger='current')
