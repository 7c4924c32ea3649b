"""Checks the backbones run besides computing: their numeric arguments, and
the first training forward's watch for outputs that nothing reads."""
import math
import warnings
from numbers import Real
from typing import Callable, Sequence, Tuple

import torch

from ..torchapi import is_tracing


def check_number(owner: str, name: str, value, low=None, high=None,
                 low_open=False, high_open=False) -> float:
    """``value`` if it is a finite real number within the bounds, else a
    ValueError naming ``owner``, ``name``, the value and the range."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and \
        math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = '(-inf' if low is None else ('(' if low_open else '[') + \
            str(low)
        hi = 'inf)' if high is None else str(high) + \
            (')' if high_open else ']')
        raise ValueError(f'{owner}: {name} must be a number in {lo}, {hi}, '
                         f'got {value!r}')
    return value


class UnusedOutputWarning(UserWarning):
    """Selected backbone outputs got no gradient: nothing reads them."""


def unused_outputs_message(owner: str, out_indices: Sequence[int],
                           unused: Sequence[int], stem_stride: int = 4) -> str:
    """What to say when outputs ``unused`` (stage indices) of backbone
    ``owner`` with ``out_indices`` got no gradient. The backbone's own
    warning (:class:`UnusedOutputWarning`) and
    :class:`~mmpoolformer.engine.PyramidCheckHook` say this."""
    outs = ' and '.join(f'{i} (stride {stem_stride * 2**i}, norm{i})'
                        for i in unused)
    one = len(unused) == 1
    keep = tuple(i for i in out_indices if i not in unused)
    return (f'{owner}: output{"" if one else "s"} {outs} of out_indices='
            f'{tuple(out_indices)} received no gradient: nothing reads '
            f'{"it" if one else "them"}, so the heads may read other '
            f'strides than they assume, and under DDP the unused norm fails '
            f'the second iteration unless find_unused_parameters=True. Fix: '
            f'make the neck read {"it" if one else "them"} (an FPN from '
            f'its first input: start_level=0) or select only what it reads '
            f"(out_indices={keep}, the neck's in_channels to match)")


def _unchanged(outs):
    return outs


def watch_outputs(backbone, x: torch.Tensor
                  ) -> Tuple[torch.Tensor, Callable[[tuple], tuple]]:
    """For ``backbone``'s first training forward (the stem's output ``x``
    in hand): ``x`` joined to a zero leaf whose gradient hook runs after
    the gradients of every output have been computed (they all flow
    through ``x``), and a function that marks the outputs and returns them,
    so that the hook warns once with :func:`unused_outputs_message` about
    the outputs no gradient reached. Any other forward: ``x`` and a
    function that returns the outputs as they are.

    Only where ``x`` already needs a gradient (a trainable stem, the
    default): joining the anchor to a frozen stem's output would give stage
    0 an input gradient to compute, and the fast path's choice a key of its
    own, for one step. :class:`~mmpoolformer.engine.PyramidCheckHook`
    covers frozen stems."""
    if backbone._outputs_checked or not backbone.training or \
            not x.requires_grad or not torch.is_grad_enabled() or \
            is_tracing():
        return x, _unchanged
    backbone._outputs_checked = True
    seen = {}
    anchor = torch.zeros((), device=x.device, requires_grad=True)

    def check(grad):
        unused = [i for i, got in seen.items() if not got]
        if unused:
            warnings.warn(unused_outputs_message(
                type(backbone).__name__, backbone.out_indices, unused,
                backbone.stem_stride), UnusedOutputWarning, stacklevel=2)

    def mark(outs):
        for i, out in zip(backbone.out_indices, outs):
            # a frozen stage and norm have no gradient to miss
            if any(p.requires_grad for m in (backbone.stages[i], getattr(
                    backbone, f'norm{i}')) for p in m.parameters()):
                seen[i] = False
                out.register_hook(
                    lambda grad, i=i: seen.__setitem__(i, True))
        return outs

    anchor.register_hook(check)
    return x + anchor, mark
