"""How far a backbone's outputs and parameter gradients move under autocast
(bf16, fp16) from fp32, at ordinary and at large activations::

    python -m mmpoolformer.testing.precision [--families ...] [--dtypes ...]

prints one markdown row per family, size, dtype and case (used by
tests/test_engine/test_amp_family.py and recorded in docs/benchmarks.md).
"""
import argparse
import functools
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .reference import randomise

DTYPES = dict(bf16=torch.bfloat16, fp16=torch.float16)
# The PoolFormer paper's hybrid: pooling in stages 0-1, attention in 2-3.
HYBRID = dict(token_mixers=('pooling', 'pooling', 'attention', 'attention'),
              norm='sample')
HYBRID_SIZES = dict(
    s12=dict(depths=(2, 2, 6, 2), dims=(64, 128, 320, 512), **HYBRID),
    m36=dict(depths=(6, 6, 18, 6), dims=(96, 192, 384, 768), **HYBRID))
#: The families the tests and benchmarks measure: family -> (class name in
#: mmpoolformer, its S and M/B sizes). ``metaformer`` is the PoolFormer
#: paper's hybrid (:data:`HYBRID_SIZES`).
FAMILIES = dict(
    poolformer=('PoolFormer', ('s12', 'm36')),
    poolformerv2=('PoolFormerV2', ('s12', 'm36')),
    convformer=('ConvFormer', ('s18', 'm36')),
    caformer=('CAFormer', ('s18', 'm36')),
    identityformer=('IdentityFormer', ('s12', 'm36')),
    metaformer=('MetaFormer', ('s12', 'm36')),
)


def family_class(family: str) -> type:
    """mmpoolformer's backbone class of ``family`` (a key of
    :data:`FAMILIES`)."""
    import mmpoolformer
    if family not in FAMILIES:
        raise ValueError(f'unknown family {family!r}; families are '
                         f'{sorted(FAMILIES)}')
    return getattr(mmpoolformer, FAMILIES[family][0])


# (family, size): {dtype: (outputs, gradients)}, about 1.2x the errors
# measured on CPU, which tests/test_engine/test_amp_family.py holds on every
# device and tools/benchmark.py's GPU matrix reports against. The comments
# say what they were before the stages' fp32 lift (fp32_stream) reached the
# MetaFormer baselines. Each bound is below that.
BOUNDS = {
    # measured 5.5e-3 / 7.9e-3 and 6.7e-4 / 1.0e-3
    ('poolformer', 's12'): dict(bf16=(6.6e-3, 9.5e-3), fp16=(8e-4, 1.2e-3)),
    # 7.9e-3 / 1.4e-2 and 1.13e-3 / 1.9e-3; before: 1.11e-2 / 2.3e-2 and
    # 1.46e-3 / 2.9e-3 (pool(x) - x in bf16/fp16)
    ('poolformerv2', 's12'): dict(bf16=(9.4e-3, 1.7e-2),
                                  fp16=(1.4e-3, 2.3e-3)),
    # 2.6e-3 / 5.6e-3 and 3.4e-4 / 7.4e-4; before: 4.1e-3 / 7.4e-3 and
    # 5.1e-4 / 1.06e-3
    ('convformer', 's18'): dict(bf16=(3.2e-3, 6.7e-3), fp16=(4.1e-4, 8.9e-4)),
    # 3.6e-3 / 7.0e-3 and 3.9e-4 / 8.2e-4; before: 4.1e-3 / 6.7e-3 and
    # 5.2e-4 / 9.0e-4
    ('caformer', 's18'): dict(bf16=(4.3e-3, 8.4e-3), fp16=(4.7e-4, 9.8e-4)),
    # 3.6e-3 / 5.8e-3 and 4.3e-4 / 8.0e-4; before: 5.2e-3 / 8.6e-3 and
    # 6.4e-4 / 1.07e-3
    ('identityformer', 's12'): dict(bf16=(4.3e-3, 7e-3),
                                    fp16=(5.2e-4, 9.7e-4)),
    # 4.2e-3 / 7.0e-3 and 5.6e-4 / 9.2e-4; before: 5.0e-3 / 8.1e-3 and
    # 6.4e-4 / 1.37e-3
    ('metaformer', 's12'): dict(bf16=(4.9e-3, 8.4e-3), fp16=(6.6e-4, 1.1e-3)),
}
# family: (outputs, gradients) of fp16 at large activations, about 1.2x the
# measured errors. Before StarReLU ran in fp32 and the layer after it
# through fp16_safe, every MetaFormer baseline gave inf and NaN here.
LARGE_BOUNDS = dict(
    poolformer=(7.5e-4, 5e-3),  # 6.2e-4 / 4.2e-3
    poolformerv2=(2.7e-3, 5e-3),  # 2.2e-3 / 4.2e-3
    convformer=(2.7e-2, 5.5e-2),  # 2.3e-2 / 4.6e-2
    caformer=(6.2e-3, 2.4e-2),  # 5.2e-3 / 2.0e-2
    identityformer=(3.6e-3, 6e-3),  # 3.0e-3 / 5.0e-3
    metaformer=(2.7e-3, 5.1e-3),  # 2.2e-3 / 4.2e-3
)
# Layers whose output is an activation's input: the MLPs' first layers and
# the separable convolutions' first pointwise convolutions.
PRE_ACTIVATION = ('fc1', 'pwconv1')


def build(family: str, size: str, seed: int = 0,
          device: str = 'cpu') -> nn.Module:
    """Backbone ``family`` at ``size`` (a key of :data:`FAMILIES`), its
    scales, norm affines and StarReLU scalars randomised to order 1 (see
    :func:`randomise`), in training mode on ``device`` (built on the CPU,
    so every device gets the same weights)."""
    sizes = FAMILIES[family][1]
    if size not in sizes:
        raise ValueError(f'{family} is measured at sizes {sizes}, got '
                         f'{size!r}')
    arch = HYBRID_SIZES[size] if family == 'metaformer' else size
    # v1's fast path never runs under autocast: the fp32 reference does
    # not take it either
    kwargs = dict(fused=False) if family == 'poolformer' else {}
    torch.manual_seed(seed)
    return randomise(family_class(family)(arch, **kwargs),
                     seed).to(device).train()


def amplify(model: nn.Module, x: torch.Tensor, peak: float = 350.) -> float:
    """Scale every layer of ``model`` named like :data:`PRE_ACTIVATION`
    (weight and bias) so that its largest output on ``x`` is ``peak`` in
    magnitude, as trained networks' outliers are, in place, in one fp32
    forward in which each layer sees its predecessors already scaled.
    Returns the largest |output| of ``model`` then."""
    handles = []

    def rescale(module, args, out):
        factor = peak / out.detach().abs().max().clamp_min(1e-12)
        with torch.no_grad():
            for p in module.parameters(recurse=False):
                p.mul_(factor)
        return out * factor

    for name, module in model.named_modules():
        if name.rpartition('.')[2] in PRE_ACTIVATION:
            handles.append(module.register_forward_hook(rescale))
    if not handles:
        raise ValueError(f'{type(model).__name__} has no layer named like '
                         f'{PRE_ACTIVATION}')
    try:
        with torch.no_grad():
            outs = model(x)
    finally:
        for h in handles:
            h.remove()
    outs = outs if isinstance(outs, (tuple, list)) else (outs, )
    return max(o.abs().max().item() for o in outs)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error of ``a`` against ``b`` in the 2-norm (inf if ``a`` is
    not finite)."""
    if not torch.isfinite(a).all():
        return float('inf')
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def cpu_autocasts(dtype: str) -> bool:
    """Whether this torch autocasts to ``dtype`` ('bf16', 'fp16') on the
    CPU: torch 2.0's CPU autocast knows bf16 alone."""
    try:
        with torch.autocast('cpu', dtype=DTYPES[dtype]):
            return True
    except RuntimeError:
        return False


#: the autocast dtypes this torch runs on the CPU
CPU_DTYPES = tuple(d for d in ('bf16', 'fp16') if cpu_autocasts(d))


@functools.lru_cache(maxsize=None)
def cpu_bf16_conv_error() -> float:
    """torch's own error on one bf16 1x1 convolution (512 input channels)
    on this CPU: its largest deviation from the exact result for the same
    bf16 inputs, relative to the largest output. A kernel that accumulates
    in fp32 reaches bf16's output rounding alone: 2.7e-3 (torch 2.13 on an
    AMD EPYC with AVX2). torch 2.0.1's on the same CPU reached 5.0e-2, 18
    times that: it accumulates in bf16."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 512, 8, 8, generator=gen).bfloat16()
    w = (torch.randn(1024, 512, 1, 1, generator=gen) / 22.6).bfloat16()
    exact = F.conv2d(x.double(), w.double())
    err = (F.conv2d(x, w).double() - exact).abs().max() / exact.abs().max()
    return err.item()


#: Above this :func:`cpu_bf16_conv_error`, the CPU's bf16 convolutions are
#: too coarse for the bf16 bounds here, which were measured with kernels
#: that accumulate in fp32 (as GPUs' do): on such a CPU, tests hold bf16
#: autocast to finite results alone.
COARSE_BF16 = 1e-2


def cpu_bf16_coarse() -> str:
    """Why the bf16 bounds do not apply on this CPU ('' where they do)."""
    err = cpu_bf16_conv_error()
    if err <= COARSE_BF16:
        return ''
    return (f'torch {torch.__version__}\'s bf16 convolutions on this CPU '
            f'are off by {err:.1e} of their scale (bf16 rounding alone: '
            f'3e-3): the bf16 bounds, measured where they accumulate in '
            f'fp32, do not apply; bf16 is held to finite results here')


def run(model: nn.Module, x: torch.Tensor, dtype=None, seed: int = 1):
    """Outputs and per-stage parameter gradients of one forward and
    backward (of the outputs against fixed random weights) under autocast
    to ``dtype`` (None: fp32)."""
    model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=dtype,
                        enabled=dtype is not None):
        outs = model(x)
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o.float() * torch.randn(o.shape, generator=gen).to(o.device)
                ).sum() for o in outs)
    loss.backward()
    grads = [torch.cat([p.grad.flatten() for p in s.parameters()
                        if p.grad is not None]) for s in model.stages]
    return [o.detach().float() for o in outs], grads


def errors(model: nn.Module, x: torch.Tensor,
           dtypes: Sequence[str] = ('bf16', 'fp16')) -> Dict[str, dict]:
    """For each of ``dtypes``: the relative error of each output
    (``out``) and of each stage's parameter gradients (``grad``) against
    fp32, and whether they are all finite. The fp32 run itself must be
    finite."""
    ref_outs, ref_grads = run(model, x)
    for t in ref_outs + ref_grads:
        if not torch.isfinite(t).all():
            raise ValueError('the fp32 run is not finite: nothing to compare')
    result = {}
    for name in dtypes:
        outs, grads = run(model, x, DTYPES[name])
        result[name] = dict(
            out=[rel(a, b) for a, b in zip(outs, ref_outs)],
            grad=[rel(a, b) for a, b in zip(grads, ref_grads)],
            finite_out=all(bool(torch.isfinite(o).all()) for o in outs),
            finite_grad=all(bool(torch.isfinite(g).all()) for g in grads))
    return result


def measure(family: str, size: str, shape=(2, 3, 64, 96), seeds=(0, 1),
            dtypes=('bf16', 'fp16'), large: bool = False,
            device: str = 'cpu') -> Dict[str, dict]:
    """:func:`errors` of :func:`build` (``family``, ``size``) on a random
    input of ``shape``, the worst over ``seeds``; with ``large``, after
    :func:`amplify`. On ``device``, from the CPU's weights and inputs."""
    worst = {}
    for seed in seeds:
        model = build(family, size, seed, device)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(
            seed)).to(device)
        if large:
            amplify(model, x)
        for name, res in errors(model, x, dtypes).items():
            if name not in worst:
                worst[name] = res
                continue
            w = worst[name]
            w['out'] = [max(a, b) for a, b in zip(w['out'], res['out'])]
            w['grad'] = [max(a, b) for a, b in zip(w['grad'], res['grad'])]
            w['finite_out'] &= res['finite_out']
            w['finite_grad'] &= res['finite_grad']
    return worst


def bound_problems(result: Dict[str, dict],
                   bounds: Dict[str, tuple]) -> List[str]:
    """What in ``result`` (of :func:`measure`) breaks ``bounds``
    ({dtype: (outputs, gradients)}): non-finite values, or a largest error
    above its bound. Empty if nothing does."""
    found = []
    for dtype, (out_tol, grad_tol) in bounds.items():
        res = result[dtype]
        if not (res['finite_out'] and res['finite_grad']):
            found.append(f'{dtype}: not finite')
        for part, tol in (('out', out_tol), ('grad', grad_tol)):
            if max(res[part]) > tol:
                found.append(f'{dtype}: {part} error {max(res[part]):.2e} '
                             f'> {tol:.2e} (stages {res[part]})')
    return found


def table(rows: List[tuple]) -> str:
    lines = ['| family | size | dtype | activations | max rel. error, outputs '
             '(stage 0..3) | max rel. error, gradients (stage 0..3) | '
             'finite out / grad |', '|---|---|---|---|---|---|---|']
    for family, size, dtype, case, r in rows:
        lines.append(
            f'| {family} | {size} | {dtype} | {case} | '
            f'{max(r["out"]):.2e} ({" ".join(f"{e:.1e}" for e in r["out"])})'
            f' | {max(r["grad"]):.2e} '
            f'({" ".join(f"{e:.1e}" for e in r["grad"])}) | '
            f'{"yes" if r["finite_out"] else "NO"} / '
            f'{"yes" if r["finite_grad"] else "NO"} |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--families', nargs='+', default=list(FAMILIES),
                        choices=list(FAMILIES))
    parser.add_argument('--sizes', nargs='+', default=None,
                        help="those of each family's S and M sizes to "
                        "measure (default: both)")
    parser.add_argument('--dtypes', nargs='+', default=list(DTYPES),
                        choices=list(DTYPES))
    parser.add_argument('--cases', nargs='+', default=['ordinary', 'large'],
                        choices=['ordinary', 'large'])
    parser.add_argument('--shape', type=int, nargs=4, default=(2, 3, 64, 96))
    parser.add_argument('--seeds', type=int, nargs='+', default=(0, 1))
    args = parser.parse_args(argv)
    rows = []
    for family in args.families:
        sizes = FAMILIES[family][1]
        for size in [s for s in args.sizes or sizes if s in sizes]:
            for case in args.cases:
                res = measure(family, size, tuple(args.shape), args.seeds,
                              args.dtypes, case == 'large')
                for dtype in args.dtypes:
                    rows.append((family, size, dtype, case, res[dtype]))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))


if __name__ == '__main__':
    main()
