"""The fast path of the PoolFormer block: one module, one entry point,
:func:`block_forward`, a function of the block's input and parameters.

GroupNorm with one group is a per-sample affine map, so
``pool(GN(x)) - GN(x) = g / std * (pool(x) - x)``: the token mixer and its
residual become one ``lerp``. GN2 becomes one normalising pass with its
affine folded into fc1, and LayerScale folds into fc2, so the MLP is two
GEMMs over the ``[N*HW, C]`` view of the channels-last map, the second
accumulating onto the residual. Per sample, on that view::

    y   = x + s * (pool(x) - x),     s = a * rstd(x) [* keep1]
    z   = (y - mean(y)) * rstd(y)
    u   = z @ w1 + b1
    out = y + [keep2 *] (gelu(u) @ w2 + b2)

Autograd would run this as a dozen ops, each allocating a full-size result
forward and several more backward. :class:`FusedBlock` writes ``y`` and then
``out`` into one buffer, and ``gelu(u)`` exists only a chunk of rows at a
time, in forward and backward (where it is recomputed): a block keeps ``x``,
``z`` and ``u`` for the backward. The backward writes ``du`` over ``u`` and
then its other map-sized results into that buffer: on CPU, every fresh
map-sized allocation costs page faults on top of the pass itself.
``torch.var_mean`` is also several times slower than the layer-norm kernel,
which gives the same statistics.

Each PoolFormer stage decides, once per forward, whether its blocks run this
path (:func:`applies`); for ``fused='auto'``, by measuring both paths where
it runs (:func:`decide` says how, and what it costs).
"""
import math
import os
import time
from functools import partial
from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.logging import print_log

from ..torchapi import autocast_enabled, is_tracing

_CL = torch.channels_last


def avg_pool(x: torch.Tensor, size: int, out: torch.Tensor):
    """The token mixer's pooling (stride 1, same size, border windows
    average only the pixels inside the map), written into ``out``."""
    return torch.ops.aten.avg_pool2d.out(
        x, [size, size], [1, 1], [size // 2, size // 2], False, False, None,
        out=out)


def _nhwc(storage: torch.Tensor, n: int, c: int, h: int, w: int):
    """An [N, C, H, W] channels-last view of ``storage``'s first N*C*H*W
    elements. NHWC by construction, so that its flat view is a view even
    where channels-last strides are ambiguous (H*W or N of 1)."""
    return storage.view(-1)[:n * c * h * w].view(n, h, w, c).permute(
        0, 3, 1, 2)


def _chunks(n: int, per_sample: int, width: int, elements: int = 1 << 18):
    """Row ranges ``(sample, start, stop)`` of about ``elements`` values of
    a ``[n * per_sample, width]`` matrix, none crossing samples."""
    step = max(1, elements // width)
    for i in range(n):
        end = (i + 1) * per_sample
        for start in range(i * per_sample, end, step):
            yield i, start, min(start + step, end)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """A channels-last ``[N, C, H, W]`` map as its ``[N, H*W*C]`` view."""
    return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)


class FusedBlock(torch.autograd.Function):
    """``FusedBlock.apply(x, a, w1, b1, w2, b2, keep1, keep2, eps1, eps2,
    pool_size)``.

    Shapes: ``x`` [N, C, H, W] (any memory format; the result is
    channels-last), ``a`` [C], ``w1`` [C, D], ``b1`` [D], ``w2`` [D, C]
    (D: the MLP's hidden width), ``b2`` [C], ``keep1``/``keep2`` [N]
    stochastic-depth factors or None.

    The backward overwrites the saved pre-activations ``u`` with their
    gradients, so a second backward through the same graph
    (``retain_graph=True``) stops with autograd's in-place error instead of
    returning wrong gradients.
    """

    @staticmethod
    def forward(ctx, x, a, w1, b1, w2, b2, keep1, keep2, eps1, eps2,
                pool_size):
        n, c, h, w = x.shape
        rows, size = n * h * w, c * h * w
        x = x.contiguous(memory_format=_CL)
        out = _nhwc(x.new_empty(size * n), n, c, h, w)
        flat = _flat(out)
        # only the statistics are kept; out is overwritten below
        _, mean1, rstd1 = torch.ops.aten.native_layer_norm.out(
            _flat(x), [size], None, None, eps1, out0=flat,
            out1=x.new_empty(n, 1), out2=x.new_empty(n, 1))
        r1 = rstd1 if keep1 is None else rstd1 * keep1.view(n, 1)
        s = (a * r1).view(n, c, 1, 1)
        torch.lerp(x, avg_pool(x, pool_size, out=out), s, out=out)
        z, _, rstd2 = torch.native_layer_norm(flat, [size], None, None, eps2)
        u = torch.addmm(b1, z.view(rows, c), w1)
        grad = any(ctx.needs_input_grad)
        o2 = flat.view(rows, c)
        if keep2 is None:
            o2.add_(b2)
        else:
            o2.view(n, h * w, c).add_(b2 * keep2.view(n, 1, 1))
        w2s = [w2] * n if keep2 is None else [w2 * keep for keep in keep2]
        gelu = F.gelu if grad else torch.ops.aten.gelu_
        for i, start, stop in _chunks(n, h * w, u.shape[1]):
            # gelu(u) exists only a chunk at a time (with autograd, the
            # backward recomputes it from u, which it keeps)
            o2[start:stop].addmm_(gelu(u[start:stop]), w2s[i])
        if grad:
            ctx.save_for_backward(x, z, u, mean1, rstd1, rstd2, a, w1, w2, s,
                                  keep1, keep2)
            ctx.pool_size = pool_size
        return out

    @staticmethod
    def backward(ctx, grad):
        (x, z, u, mean1, rstd1, rstd2, a, w1, w2, s, keep1,
         keep2) = ctx.saved_tensors
        n, c, h, w = x.shape
        rows, size = n * h * w, c * h * w
        k = ctx.pool_size
        g = _flat(grad.contiguous(memory_format=_CL))

        # MLP branch, a chunk of rows at a time: gelu(u) is recomputed, and
        # du overwrites u. Later map-sized results go into u's buffer too:
        # on CPU a fresh large allocation costs page faults on top of the
        # pass that fills it.
        gb = g if keep2 is None else g * keep2.view(n, 1)
        gb = gb.view(rows, c)
        dw2 = w2.new_zeros(w2.shape)
        db2 = gb.sum(0)
        for _, start, stop in _chunks(n, h * w, u.shape[1]):
            uc, gc = u[start:stop], gb[start:stop]
            hc = F.gelu(uc)
            dw2.addmm_(hc.t(), gc)
            dh = torch.mm(gc, w2.t(), out=hc)
            torch.ops.aten.gelu_backward.grad_input(dh, uc, grad_input=uc)
        du = u
        z2 = z.view(rows, c)
        dw1 = torch.mm(z2.t(), du)
        db1 = du.sum(0)
        dz = torch.mm(du, w1.t()).view(n, size)
        # norm2 (no affine), in place on dz:
        # dy = g + rstd * (dz - mean(dz) - z * mean(dz * z))
        z = z.view(n, size)
        mean_dz = dz.mean(1, keepdim=True)
        mean_dzz = torch.linalg.vecdot(dz, z).view(n, 1) / size
        dy = torch.addcmul(g, dz, rstd2, out=dz)
        dy.addcmul_(z, -rstd2 * mean_dzz).sub_(rstd2 * mean_dz)
        dy = dy.view(n, h, w, c).permute(0, 3, 1, 2)

        # token mixer: y = x + s * (pool(x) - x). u's buffer, spent, holds
        # two maps of N*C*H*W: the pool terms and dx.
        spare = u.view(-1) if u.numel() >= 2 * rows * c else \
            u.new_empty(2 * rows * c)
        tmp = avg_pool(x, k, out=_nhwc(spare, n, c, h, w))
        tmp.sub_(x).mul_(dy)
        ds = _flat(tmp).view(n, h * w, c).sum(1)  # d loss / d s, [N, C]
        r1 = rstd1.view(n) if keep1 is None else rstd1.view(n) * keep1
        da = (ds * r1.view(n, 1)).sum(0)
        drstd = (ds * a).sum(1)
        if keep1 is not None:
            drstd = drstd * keep1
        dx = torch.ops.aten.avg_pool2d_backward.grad_input(
            torch.mul(dy, s, out=tmp), x, [k, k], [1, 1], [k // 2, k // 2],
            False, False, None,
            grad_input=_nhwc(spare[rows * c:], n, c, h, w))
        dx.addcmul_(dy, 1 - s)
        # through rstd(x): d rstd / dx = -rstd^3 * (x - mean) / size
        coef = (-drstd * rstd1.view(n)**3 / size).view(n, 1, 1, 1)
        dx.addcmul_(x, coef).sub_(coef * mean1.view(n, 1, 1, 1))
        return (dx, da, dw1, db1, dw2, db2, None, None, None, None, None)


MODES = (True, False, 'auto')


def _tracing() -> bool:
    """Whether the forward is being traced rather than run
    (:func:`mmpoolformer.torchapi.is_tracing`). A tracer sees the autograd
    function as one opaque node: exporters fail on it, FLOP counters skip
    it, and inductor fuses the op-by-op block better than the hand-fused
    one."""
    return is_tracing()


#: How many times each path is timed: interleaved, the first round's
#: one-time costs (kernel set-up, the allocator's first touches) absorbed by
#: taking each path's fastest run.
ROUNDS = 3
#: Close calls go to the fast path, which holds about half the memory in
#: training: it is chosen unless op by op is faster by more than this.
MARGIN = 0.03
#: Pins what 'auto' runs, for reproducibility: 'fast' or 'plain' (op by op)
#: everywhere without measuring; 'measure' (or unset) measures.
ENV = 'MMPOOLFORMER_AUTO'
PINS = dict(measure=None, fast=True, plain=False)
#: What 'auto' runs, by device type, where the user asked for
#: reproducibility (``torch.are_deterministic_algorithms_enabled()``, which
#: mmengine's ``randomness=dict(deterministic=True)`` turns on): a rule,
#: since a measurement can flip a close call from one run to the next. On
#: the CPU the fast path: it was the faster of the two for the whole S12 at
#: every point of docs/benchmarks.md's CPU table, and holds about half the
#: memory in training. Elsewhere (CUDA) op by op: the fast path has not been
#: measured there, and a fast path runs only where a measurement earned it.
#: Both call only ops torch's deterministic mode allows (pooling and its
#: backward, GEMMs, layer norm, GELU).
DETERMINISTIC = dict(cpu=True)
#: The decisions of this process: :func:`decide`'s key -> fast path or not.
CHOICES: Dict[tuple, bool] = {}
_told_deterministic = set()  # device types already logged
_clock = time.perf_counter  # tests replace it


def bucket(x: torch.Tensor) -> Tuple[int, int]:
    """The size class of a map ``x`` [N, C, H, W]: its batch and its pixels
    per sample, each rounded to the nearest power of two (log2 rounded).

    Both paths' costs grow smoothly with the map, so a choice measured at one
    size holds for sizes within a factor of about 1.4 of it. mmdet keeps the
    aspect ratio (1333x800 pads to 1344x800, 1216x800, ..., 800x800 at
    most 1.7x fewer pixels, also transposed), so a detection run meets two
    pixel classes per batch size and grad mode, and measures those once;
    the smaller last batch of an epoch adds one batch class."""
    n, _, h, w = x.shape
    return round(math.log2(n)), round(math.log2(max(h * w, 1)))


def measurable(x: torch.Tensor) -> bool:
    """Whether 'auto' can time both paths on ``x``'s device: the CPU and
    CUDA (synchronised, RNG state saved); elsewhere it runs op by op."""
    return x.device.type in ('cpu', 'cuda')


def _sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def decide(key: tuple, run: Callable[[bool], None],
           device: torch.device) -> bool:
    """Whether 'auto' runs the fast path for ``key`` (the stage, its input's
    :func:`bucket`, device, dtype, threads, grad mode: see
    :func:`stage_key`): the path measured faster there.

    How it decides: on the first call with a key, ``run(fast)`` runs the
    stage's first block on the real input by each path (its forward, and in
    training its backward through ``torch.autograd.grad``, so no ``.grad``
    changes; with its share of converting the stage's output to NCHW where
    the backbone returns it channels-last), :data:`ROUNDS` times each,
    interleaved, under a forked RNG (drop path's draws leave the stream
    where they found it). Each path's
    fastest run counts; the fast path wins unless op by op is faster by more
    than :data:`MARGIN`. The choice is cached for the process
    (:data:`CHOICES`) and logged. So the first call of each key costs
    :data:`ROUNDS` x 2 extra runs of one block per stage, 24 block runs for
    a 12-block S12: 1.6 to 2.4 steps' time, once (docs/benchmarks.md).
    :data:`ENV` pins the choice instead.

    Under DDP each rank measures for itself and may choose differently:
    both paths compute the same function of the same parameters (to fp32
    rounding) and DDP averages the gradients, so the replicas stay equal;
    a collective here would deadlock, since ranks meet new sizes at
    different steps.

    With deterministic algorithms on (``torch.use_deterministic_algorithms``,
    mmengine's ``randomness=dict(deterministic=True)``) nothing is measured:
    'auto' follows :data:`DETERMINISTIC` and says so once per device type
    in the log.
    """
    pin = os.environ.get(ENV, 'measure')
    if pin not in PINS:
        raise ValueError(f'{ENV} must be one of {tuple(PINS)}, got {pin!r}')
    if PINS[pin] is not None:
        return PINS[pin]
    if torch.are_deterministic_algorithms_enabled():
        choice = DETERMINISTIC.get(device.type, False)
        if device.type not in _told_deterministic:
            _told_deterministic.add(device.type)
            print_log(
                f"fused='auto': deterministic algorithms are on, so on "
                f"{device.type} it runs "
                f"{'the fast path' if choice else 'op by op'} without "
                f"measuring ({ENV}=fast|plain pins either path)",
                logger='current')
        return choice
    if key not in CHOICES:
        CHOICES[key] = _measure(key, run, device)
    return CHOICES[key]


def _measure(key, run, device) -> bool:
    times = {True: [], False: []}
    start = _clock()
    devices = [device.index if device.index is not None else
               torch.cuda.current_device()] if device.type == 'cuda' else []
    with torch.random.fork_rng(devices=devices):
        for r in range(ROUNDS):
            for path in (True, False) if r % 2 == 0 else (False, True):
                _sync(device)
                t0 = _clock()
                run(path)
                _sync(device)
                times[path].append(_clock() - t0)
    fused, plain = min(times[True]), min(times[False])
    choice = fused <= plain * (1 + MARGIN)
    print_log(f"fused='auto' at {', '.join(map(str, key))}: fast path "
              f"{1e3 * fused:.1f} ms, op by op {1e3 * plain:.1f} ms per "
              f"block -> "
              f"{'fast path' if choice else 'op by op'} (measured in "
              f"{_clock() - start:.2f} s)", logger='current')
    return choice


def applies(mode, x: torch.Tensor, training: bool, dropout: float,
            key: Callable[[], tuple] = None,
            run: Callable[[bool], None] = None) -> bool:
    """Whether blocks run the fast path on ``x``, for ``mode`` True
    (wherever it can run), 'auto' (where it can run and was measured
    faster: :func:`decide` with ``key()`` and ``run``) or False (never).

    It cannot run while traced (:func:`_tracing`); under autocast, where
    the op-by-op block gets autocast's per-op dtypes and the fast one would
    compute in its input's dtype; with MLP dropout in training, which it
    leaves out; or on an empty batch. 'auto' runs op by op on devices where
    it cannot measure (:func:`measurable`).
    """
    if not mode or _tracing() or autocast_enabled(x.device.type) \
            or (training and dropout > 0) or x.shape[0] == 0:
        return False
    if mode is True:
        return True
    return measurable(x) and decide(key(), run, x.device)


def stage_key(stage, x: torch.Tensor) -> tuple:
    """What 'auto''s choice for ``stage`` (a ``PoolFormerStage``) on input
    ``x`` depends on (the key of :func:`decide`): the block's shape, ``x``'s
    size class, device, dtype and the CPU threads, which gradients the
    backward computes, train mode (drop path) and checkpointing."""
    block = stage.blocks[0]
    fc1 = block.mlp.fc1
    on = torch.is_grad_enabled()
    params = on and any(p.requires_grad for p in block.parameters())
    grad = ('params+' if params else '') + 'input' \
        if on and x.requires_grad else 'params' if params else 'none'
    return (f'block {fc1.in_channels}-{fc1.out_channels} pool '
            f'{block.token_mixer.pool_size}',
            'batch ~2^%d, ~2^%d px' % bucket(x),
            str(x.device), str(x.dtype).replace('torch.', ''),
            f'{torch.get_num_threads()} threads', f'grad {grad}',
            'train' if stage.training else 'eval',
            'with_cp' if stage.with_cp and stage.training else 'no cp')


def time_stage(stage, x: torch.Tensor, fused: bool) -> None:
    """One run of ``stage``'s first block on ``x`` by the fast path
    (``fused``) or op by op, as the stage's forward would run it, and its
    backward where training needs one, through ``torch.autograd.grad``: no
    ``.grad`` is written, and nothing is kept. A returned stage's
    channels-last output adds the block's share of its conversion to
    NCHW."""
    block = stage.blocks[0]
    x = x.detach().requires_grad_(x.requires_grad)
    fn = block
    if fused:
        fn = partial(type(block).fused_forward, block)
        inp = x.contiguous(memory_format=torch.channels_last)
    else:
        inp = x
    if stage.with_cp and stage.training and torch.is_grad_enabled():
        out = cp.checkpoint(fn, inp, use_reentrant=False)
    else:
        out = fn(inp)
    # what the backward computes: the block's parameters and x where they
    # need gradients (none without grad mode)
    wrt = [] if not torch.is_grad_enabled() else \
        [p for p in block.parameters() if p.requires_grad] + \
        ([x] if x.requires_grad else [])
    if stage.returned and not out.is_contiguous():
        # A channels-last output (the fast path's, or op by op's after a
        # fast stage) costs a conversion to NCHW where the backbone returns
        # it, and its gradient one back in training: once per stage, so
        # each block is charged its share, the conversion of
        # 1/len(blocks) of the channels each way.
        share = out.detach()[:, :-(-out.shape[1] // len(stage.blocks))]
        share = share.contiguous()
        if wrt:
            share.contiguous(memory_format=torch.channels_last)
    if wrt:
        torch.autograd.grad(out, wrt, torch.ones_like(out),
                            allow_unused=True)


def keep_factor(prob: float, x: torch.Tensor):
    """Stochastic depth's per-sample factor at drop probability ``prob``
    (None at 0), drawn exactly as mmcv's ``drop_path`` draws it (same RNG
    calls, same order)."""
    if prob == 0:
        return None
    keep = 1 - prob
    rand = torch.rand((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device)
    return ((keep + rand).floor() / keep).view(x.shape[0])


def block_forward(x: torch.Tensor, norm1, layer_scale1: torch.Tensor, norm2,
                  fc1, fc2, layer_scale2: torch.Tensor, pool_size: int,
                  keep1=None, keep2=None) -> torch.Tensor:
    """The PoolFormer block on ``x`` through :class:`FusedBlock`: its
    parameters are folded here, and autograd carries their gradients back.
    Any memory format; channels-last input avoids copies, and the result is
    channels-last.

    Args:
        x: [N, C, H, W].
        norm1, norm2: ``(weight, bias, eps)`` of the GroupNorm(1) layers.
        layer_scale1, layer_scale2: [C].
        fc1, fc2: ``(weight, bias)`` of the MLP's 1x1 convolutions (GELU
            between them).
        pool_size: The pooling window.
        keep1, keep2: Stochastic depth's factors (:func:`keep_factor`).
    """
    c = x.shape[1]
    (g1, beta1, eps1), (g2, beta2, eps2) = norm1, norm2
    a = layer_scale1 * g1
    w1 = fc1[0].flatten(1)
    b1 = fc1[1] + w1 @ beta2
    w1 = (w1 * g2).t()
    w2 = (fc2[0].flatten(1) * layer_scale2.view(c, 1)).t()
    # beta1 cancels in pool(y) - y; keep it in the graph (with its exact
    # gradient, 0) so DDP sees every parameter used.
    b2 = fc2[1] * layer_scale2 + 0 * beta1
    return FusedBlock.apply(x, a, w1, b1, w2, b2, keep1, keep2, eps1, eps2,
                            pool_size)
