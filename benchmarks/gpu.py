"""The GPU matrix (``tools/benchmark.py --matrix gpu``): PoolFormer-S12,
PoolFormerV2-S12, ConvFormer-S18 and CAFormer-S18, ours against timm's
network holding the same weights, checked first and then timed.

1. Correctness. In fp32 (TF32 off) our outputs, input gradients and
   parameter gradients agree with timm's to :data:`FP32_TOL` (relative, in
   the 2-norm). Under bf16 and fp16 autocast ours are finite and within the
   bounds the CPU tests hold (:data:`mmpoolformer.testing.precision.BOUNDS`,
   and :data:`~mmpoolformer.testing.precision.LARGE_BOUNDS` for fp16 at
   large activations).
2. Speed. Forward (no autograd) and forward+backward at the configs'
   per-GPU batches (:data:`CASES`), in fp32 (torch's defaults: cuDNN may
   use TF32, matrix products do not), bf16 autocast and one fp16 row, eager
   and under ``torch.compile`` (``dynamic=False``; compile time reported);
   CUDA-synchronised medians after warm-up, as ms and images/s; peak memory
   above the weights (``torch.cuda.max_memory_allocated``).
3. Dynamic shapes. 10 training steps at mmdet-style sizes (:func:`mmdet_sizes`)
   under ``torch.compile`` with the default ``dynamic`` (static first, then
   automatic) and with ``dynamic=True``: graphs compiled and step times.

Compiling costs far more than running: the compiled parts are done in order
of importance (:func:`compile_plan`) while the time budget allows, and what
is left out is listed. ``quick`` runs the same code on tiny inputs (the
tests run it on the CPU); its figures mean nothing.
"""
import json
import os
import os.path as osp
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmpoolformer.testing import precision

from .harness import (PRECISIONS, Pair, environment, exact_fp32,
                      fresh_dynamo, graphs_compiled, peak_mib, step,
                      time_all, wall)

FAMILIES = ('poolformer_s12', 'poolformerv2_s12', 'convformer_s18',
            'caformer_s18')
# the configs' per-GPU batches: detection 2 x 1216x800, segmentation 4 x 512
CASES = dict(det2=(2, 3, 800, 1216), seg4=(4, 3, 512, 512))
QUICK_CASES = dict(det2=(2, 3, 32, 64), seg4=(4, 3, 32, 32))
#: fp32 agreement with timm: relative error in the 2-norm (fp32 arithmetic
#: lands far below; a wrong op lands far above).
FP32_TOL = 1e-4
#: A compile's cost before any was measured (seconds, per network: training
#: and inference graphs).
FIRST_COMPILE_GUESS = 60.
#: COCO-like aspect ratios (width / height) for :func:`mmdet_sizes`.
ASPECTS = (4 / 3, 3 / 4, 3 / 2, 2 / 3, 1., 16 / 9, 5 / 4, 4 / 5, 8 / 5,
           9 / 16)


@dataclass
class Settings:
    """What one run measures; :func:`settings` makes the two presets."""
    device: str
    cases: Dict[str, Tuple[int, ...]]
    families: Tuple[str, ...] = FAMILIES
    seeds: Tuple[int, ...] = (0, 1)
    agree_shape: Tuple[int, ...] = (2, 3, 128, 160)
    runs: int = 15
    warmup: int = 5
    budget_s: float = 390.
    backend: str = 'inductor'
    dynamic_scale: Tuple[int, int] = (1333, 800)
    dynamic_divisor: int = 32
    dynamic_steps: int = 10
    #: how many of :func:`compile_plan`'s tasks to try (None: all)
    compile_tasks: Optional[int] = None
    quick: bool = False


def settings(device: str = 'cuda', quick: bool = False,
             **changes) -> Settings:
    """The full GPU matrix, or with ``quick`` the same on tiny inputs for
    PoolFormer-S12 and CAFormer-S18 (v1 and a MetaFormer baseline), with
    few runs, one seed and the ``aot_eager`` backend (dynamo and
    AOTAutograd, no code generation), so that the whole pipeline runs on a
    CPU in well under a minute. ``changes`` override fields (None: keep)."""
    if quick:
        base = Settings(device, dict(QUICK_CASES),
                        families=('poolformer_s12', 'caformer_s18'),
                        seeds=(0, ), agree_shape=(1, 3, 64, 96),
                        runs=1, warmup=1, budget_s=300., backend='aot_eager',
                        dynamic_scale=(333, 200), dynamic_divisor=8,
                        dynamic_steps=4, compile_tasks=3, quick=True)
    else:
        base = Settings(device, dict(CASES))
    for key, value in changes.items():
        if value is None:
            continue
        if not hasattr(base, key):
            raise ValueError(f'no setting {key!r}; settings are '
                             f'{sorted(asdict(base))}')
        setattr(base, key, value)
    unknown = [f for f in base.families if f not in FAMILIES]
    if unknown:
        raise ValueError(f'families {unknown} are not measured; choose from '
                         f'{FAMILIES}')
    return base


# -- the checks --------------------------------------------------------------

def loss_weights(outs: Sequence[torch.Tensor], seed: int = 7):
    """Fixed random weights for a scalar loss of ``outs`` (drawn on the CPU,
    so every device gets the same)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(o.shape, generator=gen).to(o.device) for o in outs]


def grad_step(model: nn.Module, x: torch.Tensor):
    """Outputs, input gradient and parameter gradients of one fp32 forward
    and backward of ``model`` on ``x``."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    outs = model(x)
    loss = sum((o * w).sum() for o, w in zip(outs, loss_weights(outs)))
    loss.backward()
    return [o.detach() for o in outs], x.grad


def _group(name: str) -> str:
    parts = name.split('.')
    return '.'.join(parts[:2]) if parts[0] == 'stages' else parts[0]


def agreement(pair: Pair, x: torch.Tensor) -> List[dict]:
    """For each of our implementations in ``pair``: relative errors against
    timm's of the outputs (worst of the four), the input gradient and the
    parameter gradients (worst group: stem, each stage, output norms), in
    fp32 without TF32; ``ok`` if all are within :data:`FP32_TOL` and both
    have gradients for the same parameters."""
    with exact_fp32():
        ref_outs, ref_xg = grad_step(pair.impls['timm'], x)
        ref_grads = pair.our_grads(pair.impls['timm'])
        rows = []
        for label, model in pair.impls.items():
            if label == 'timm':
                continue
            outs, xg = grad_step(model, x)
            grads = {n: p.grad for n, p in model.named_parameters()
                     if p.grad is not None}
            missing = sorted(set(grads) ^ set(ref_grads))
            groups = {}
            for n in sorted(set(grads) & set(ref_grads)):
                groups.setdefault(_group(n), []).append(n)
            grad_err = {g: precision.rel(
                torch.cat([grads[n].flatten() for n in names]),
                torch.cat([ref_grads[n].flatten() for n in names]))
                for g, names in groups.items()}
            row = dict(family=pair.name, impl=label,
                       out=max(precision.rel(a, b)
                               for a, b in zip(outs, ref_outs)),
                       input_grad=precision.rel(xg, ref_xg),
                       param_grad=max(grad_err.values()),
                       worst_group=max(grad_err, key=grad_err.get),
                       unmatched=missing)
            row['ok'] = not missing and max(
                row['out'], row['input_grad'], row['param_grad']) <= FP32_TOL
            rows.append(row)
    return rows


def autocast_check(name: str, device: str, seeds=(0, 1),
                   shape=(2, 3, 64, 96)) -> List[dict]:
    """The CPU tests' autocast checks of family ``name``, on ``device``:
    bf16 and fp16 errors against fp32 within :data:`precision.BOUNDS`
    (the worst over ``seeds``), fp16 at large activations within
    :data:`precision.LARGE_BOUNDS`."""
    family, size = name.split('_')
    rows = []
    with exact_fp32():
        res = precision.measure(family, size, shape, seeds, device=device)
        large = precision.measure(family, size, shape, seeds=(0, ),
                                  dtypes=('fp16', ), large=True,
                                  device=device)
    for case, result, bounds in (
            ('ordinary', res, precision.BOUNDS[(family, size)]),
            ('large', large, dict(fp16=precision.LARGE_BOUNDS[family]))):
        for dtype, bound in bounds.items():
            r = result[dtype]
            problems = precision.bound_problems(result, {dtype: bound})
            rows.append(dict(family=name, dtype=dtype, activations=case,
                             out=max(r['out']), grad=max(r['grad']),
                             out_bound=bound[0], grad_bound=bound[1],
                             finite=r['finite_out'] and r['finite_grad'],
                             ok=not problems, problems=problems))
    return rows


# -- timing ------------------------------------------------------------------

def time_impls(impls: Dict[str, nn.Module], x: torch.Tensor, dtype,
               runs: int, warmup: int) -> Dict[Tuple[str, bool], dict]:
    """Median seconds (:func:`.harness.time_all`) and peak memory of every
    module in ``impls`` on ``x``, forward and forward+backward."""
    times = time_all(impls, x, runs, warmup, dtype)
    return {(label, backward): dict(
        median_s=times[(label, backward)],
        peak_mib=peak_mib(impls[label], x, backward, dtype))
        for label in impls for backward in (False, True)}


def speed_rows(family: str, results, case: str, shape, prec: str,
               compiled: bool) -> List[dict]:
    rows = []
    for (label, backward), r in results.items():
        rows.append(dict(
            family=family, impl=label, compiled=compiled, precision=prec,
            case=case, shape=list(shape),
            mode='fwd+bwd' if backward else 'forward',
            ms=1e3 * r['median_s'], images_per_s=shape[0] / r['median_s'],
            peak_mib=r['peak_mib']))
    return rows


# -- compiling ---------------------------------------------------------------

def compile_unit(pair: Pair, prec: str, case: str, shape, s: Settings):
    """Ours (default settings) and timm's under ``torch.compile`` (static
    shapes) at ``case`` in ``prec``: first-call times (compiling) and
    graphs, then :func:`time_impls` of both."""
    device = torch.device(s.device)
    dtype = PRECISIONS[prec]
    x = torch.randn(*shape, device=device)
    fresh_dynamo()
    compiled, rows = {}, []
    for label in ('mmpoolformer', 'timm'):
        model = pair.impls[label]
        fn = torch.compile(model, backend=s.backend, dynamic=False)
        model.zero_grad(set_to_none=True)
        g0 = graphs_compiled()
        first_train = wall(lambda: step(fn, x, True, dtype), device)
        g1 = graphs_compiled()
        first_fwd = wall(lambda: step(fn, x, False, dtype), device)
        rows.append(dict(family=pair.name, impl=label, precision=prec,
                         case=case, shape=list(shape),
                         first_fwd_bwd_s=first_train, first_forward_s=first_fwd,
                         graphs_fwd_bwd=g1 - g0,
                         graphs_forward=graphs_compiled() - g1))
        compiled[label] = fn
    results = time_impls(compiled, x, dtype, s.runs, s.warmup)
    for row in rows:  # a first call is a compile plus a run
        row['compile_fwd_bwd_s'] = row['first_fwd_bwd_s'] - results[
            (row['impl'], True)]['median_s']
        row['compile_forward_s'] = row['first_forward_s'] - results[
            (row['impl'], False)]['median_s']
    return rows, speed_rows(pair.name, results, case, shape, prec, True)


def mmdet_sizes(n: int = 10, scale=(1333, 800), divisor: int = 32):
    """``n`` (height, width) an mmdet detector trains at: images of the
    aspect ratios :data:`ASPECTS` resized to fit ``scale`` (long, short
    side) with the ratio kept, padded to a multiple of ``divisor``."""
    long, short = scale
    sizes = []
    for aspect in ASPECTS[:n]:
        h, w = 480., 480. * aspect
        f = min(long / max(h, w), short / min(h, w))
        h, w = round(h * f), round(w * f)
        sizes.append((-(-h // divisor) * divisor, -(-w // divisor) * divisor))
    if len(set(sizes)) != len(sizes):
        raise ValueError(f'sizes repeat at scale {scale}, divisor '
                         f'{divisor}: {sizes}')
    return sizes


def dynamic_study(pair: Pair, s: Settings, prec: str, batch: int = 2):
    """Training steps of our network at :func:`mmdet_sizes`, eager and
    under ``torch.compile`` with ``dynamic`` None (torch's default: static,
    recompiled with dynamic sizes once a size changes) and True."""
    device = torch.device(s.device)
    dtype = PRECISIONS[prec]
    sizes = mmdet_sizes(s.dynamic_steps, s.dynamic_scale, s.dynamic_divisor)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(batch, 3, h, w, generator=gen).to(device)
              for h, w in sizes]
    model = pair.impls['mmpoolformer']
    runs = {}
    for mode in ('eager', None, True):
        fn = model
        if mode != 'eager':
            fresh_dynamo()
            fn = torch.compile(model, backend=s.backend, dynamic=mode)
        else:  # warm the eager kernels up at the first size
            step(model, inputs[0], True, dtype)
        g0, steps = graphs_compiled(), []
        for x in inputs:
            model.zero_grad(set_to_none=True)
            t = wall(lambda: step(fn, x, True, dtype), device)
            steps.append(dict(size=list(x.shape[2:]), s=t,
                              graphs=graphs_compiled() - g0))
        label = 'eager' if mode == 'eager' else f'dynamic={mode}'
        runs[label] = dict(steps=steps, total_s=sum(t['s'] for t in steps),
                           graphs=steps[-1]['graphs'],
                           recompiles=steps[-1]['graphs'] - steps[0]['graphs'],
                           last_half_median_s=statistics.median(
                               t['s'] for t in steps[len(steps) // 2:]))
    return dict(family=pair.name, impl='mmpoolformer', precision=prec,
                batch=batch, sizes=[list(t) for t in sizes], runs=runs)


def compile_plan(families: Sequence[str], cases: Sequence[str]):
    """The compiled measurements, most important first: bf16 training at
    the first case (detection) of the first family, the dynamic-shape
    study, the other families likewise, then fp32, then the other cases."""
    first, rest = families[0], list(families[1:])
    det, others = cases[0], list(cases[1:])
    plan = [('unit', first, 'bf16', det), ('dynamic', first, 'bf16', None)]
    plan += [('unit', f, 'bf16', det) for f in rest]
    plan += [('unit', f, 'fp32', det) for f in families]
    plan += [('unit', f, p, c) for c in others for p in ('bf16', 'fp32')
             for f in families]
    return plan


class Budget:
    """Seconds left of ``seconds`` from now, and a guess of what a compile
    of each family costs, from the ones measured."""

    def __init__(self, seconds: float, clock=time.perf_counter):
        self.seconds, self.clock, self.start = seconds, clock, clock()
        self.measured: Dict[str, float] = {}

    def left(self) -> float:
        return self.seconds - (self.clock() - self.start)

    def guess(self, family: str) -> float:
        """Seconds one network's training and inference compile of
        ``family`` costs: measured, else the dearest measured, else
        :data:`FIRST_COMPILE_GUESS`."""
        if family in self.measured:
            return self.measured[family]
        return max(self.measured.values(), default=FIRST_COMPILE_GUESS)

    def record(self, family: str, seconds: float):
        self.measured[family] = max(seconds, self.measured.get(family, 0.))

    def estimate(self, task) -> float:
        kind, family = task[:2]
        # a unit compiles two networks; the study three times one
        # (static, automatic dynamic, dynamic) in training only
        return (2 if kind == 'unit' else 2.5) * self.guess(family)


# -- the whole matrix --------------------------------------------------------

def run_matrix(s: Settings, log: Callable[[str], None] = print) -> dict:
    """Everything of this module's docstring under settings ``s``; returns
    the results (see :func:`write`)."""
    device = torch.device(s.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f'device {s.device!r}: torch sees no CUDA GPU '
                           f'(torch {torch.__version__}, built for CUDA '
                           f'{torch.version.cuda})')
    budget = Budget(s.budget_s)
    res = dict(settings=asdict(s), env=environment(s.device), agreement=[],
               autocast=[], speed=[], compile=[], dynamic=None, skipped=[])
    gen = torch.Generator().manual_seed(0)
    agree_x = torch.randn(*s.agree_shape, generator=gen).to(device)
    pairs = {}
    for name in s.families:
        log(f'[{budget.seconds - budget.left():5.0f} s] {name}: checks')
        pair = pairs[name] = Pair(name, s.device)
        res['agreement'] += agreement(pair, agree_x)
        res['autocast'] += autocast_check(name, s.device, s.seeds)
        for case, shape in s.cases.items():
            x = torch.randn(*shape, generator=gen).to(device)
            for prec in PRECISIONS:
                if prec == 'fp16' and case != next(iter(s.cases)):
                    continue  # one fp16 row: detection's batch
                impls = pair.impls
                if prec != 'fp32':  # the fast path never runs under autocast
                    impls = {k: v for k, v in impls.items()
                             if k != 'mmpoolformer fused=True'}
                log(f'[{budget.seconds - budget.left():5.0f} s] {name}: '
                    f'eager {case} {prec}')
                results = time_impls(impls, x, PRECISIONS[prec], s.runs,
                                     s.warmup)
                res['speed'] += speed_rows(name, results, case, shape, prec,
                                           False)
    for i, task in enumerate(compile_plan(s.families, list(s.cases))):
        kind, name, prec, case = task
        need = budget.estimate(task)
        why = None
        if s.compile_tasks is not None and i >= s.compile_tasks:
            why = f'only the first {s.compile_tasks} compiled measurements'
        elif need > budget.left():
            why = (f'time budget: about {need:.0f} s needed, '
                   f'{max(budget.left(), 0):.0f} s left')
        if why:
            res['skipped'].append(dict(task=kind, family=name,
                                       precision=prec, case=case, reason=why))
            continue
        log(f'[{budget.seconds - budget.left():5.0f} s] {name}: compile '
            f'{kind} {prec} {case or ""}')
        if kind == 'dynamic':
            res['dynamic'] = dynamic_study(pairs[name], s, prec)
            continue
        rows, speed = compile_unit(pairs[name], prec, case, s.cases[case], s)
        for row in rows:
            budget.record(name, row['first_fwd_bwd_s'] +
                          row['first_forward_s'])
        res['compile'] += rows
        res['speed'] += speed
    res['elapsed_s'] = budget.seconds - budget.left()
    res['ok'] = all(r['ok'] for r in res['agreement'] + res['autocast'])
    torch._dynamo.reset()
    return res


# -- reporting ---------------------------------------------------------------

def _f(value, fmt='.1f'):
    return '-' if value is None else format(value, fmt)


def speed_table(rows: List[dict], case: str) -> List[str]:
    """One row per network, precision and eager/compiled at ``case``:
    forward and forward+backward ms and images/s, peak MiB, and timm's
    time over ours (above 1: ours is faster)."""
    by = {(r['family'], r['impl'], r['precision'], r['compiled'],
           r['mode']): r for r in rows if r['case'] == case}
    lines = ['| network | implementation | precision | mode | forward ms | '
             'forward img/s | fwd+bwd ms | fwd+bwd img/s | peak MiB '
             '(fwd+bwd) | timm / ours (fwd+bwd) |',
             '|---|---|---|---|---|---|---|---|---|---|']
    keys = sorted({k[:4] for k in by}, key=lambda k: (
        FAMILIES.index(k[0]) if k[0] in FAMILIES else 99,
        list(PRECISIONS).index(k[2]), k[3], k[1] == 'timm', k[1]))
    for family, impl, prec, compiled in keys:
        fwd = by.get((family, impl, prec, compiled, 'forward'))
        bwd = by.get((family, impl, prec, compiled, 'fwd+bwd'))
        ref = by.get((family, 'timm', prec, compiled, 'fwd+bwd'))
        ratio = ref['ms'] / bwd['ms'] if ref and bwd else None
        lines.append(
            f'| {family} | {impl} | {prec} | '
            f'{"compiled" if compiled else "eager"} | '
            f'{_f(fwd and fwd["ms"])} | {_f(fwd and fwd["images_per_s"])} | '
            f'{_f(bwd and bwd["ms"])} | {_f(bwd and bwd["images_per_s"])} | '
            f'{_f(bwd and bwd["peak_mib"], ".0f")} | {_f(ratio, ".2f")}x |')
    return lines


def markdown(res: dict) -> str:
    env, s = res['env'], res['settings']
    where = env['gpu'] or env.get('cpu')
    out = [f'# GPU matrix: {where}', '',
           f'torch {env["torch"]} (CUDA {env["cuda"]}, cuDNN {env["cudnn"]}),'
           f' timm {env["timm"]}, Python {env["python"]}, mmpoolformer '
           f'{env["mmpoolformer"]}; fp32 with torch\'s defaults (cuDNN TF32 '
           f'{env["cudnn_tf32"]}, matmul TF32 {env["matmul_tf32"]}); '
           f'{s["runs"]} runs after {s["warmup"]} warm-up, medians; compile '
           f'backend {s["backend"]}; {res["elapsed_s"]:.0f} s in all.', '']
    if s['quick']:
        out += ['**Quick mode (tiny inputs): these figures measure nothing.**',
                '']
    out += ['## fp32 agreement with timm (TF32 off)', '',
            f'Relative errors (2-norm), bound {FP32_TOL:g}.', '',
            '| network | implementation | outputs | input grad | parameter '
            'grads (worst group) | ok |', '|---|---|---|---|---|---|']
    for r in res['agreement']:
        out.append(f'| {r["family"]} | {r["impl"]} | {r["out"]:.1e} | '
                   f'{r["input_grad"]:.1e} | {r["param_grad"]:.1e} '
                   f'({r["worst_group"]}) | '
                   f'{"yes" if r["ok"] else "NO " + str(r["unmatched"])} |')
    out += ['', '## Autocast against fp32 (the CPU tests\' bounds)', '',
            '| network | dtype | activations | outputs (bound) | gradients '
            '(bound) | finite | ok |', '|---|---|---|---|---|---|---|']
    for r in res['autocast']:
        out.append(f'| {r["family"]} | {r["dtype"]} | {r["activations"]} | '
                   f'{r["out"]:.1e} ({r["out_bound"]:.1e}) | {r["grad"]:.1e} '
                   f'({r["grad_bound"]:.1e}) | '
                   f'{"yes" if r["finite"] else "NO"} | '
                   f'{"yes" if r["ok"] else "NO"} |')
    for case, shape in s['cases'].items():
        out += ['', f'## Speed at {case} ({"x".join(map(str, shape))})', '']
        out += speed_table(res['speed'], case)
    out += ['', '## Compile time (static shapes)', '',
            '| network | implementation | precision | case | compile s '
            '(fwd+bwd) | compile s (forward) | graphs (fwd+bwd / forward) |',
            '|---|---|---|---|---|---|---|']
    for r in res['compile']:
        out.append(f'| {r["family"]} | {r["impl"]} | {r["precision"]} | '
                   f'{r["case"]} | {r["compile_fwd_bwd_s"]:.1f} | '
                   f'{r["compile_forward_s"]:.1f} | {r["graphs_fwd_bwd"]} / '
                   f'{r["graphs_forward"]} |')
    d = res['dynamic']
    out += ['', '## Dynamic shapes: training steps at mmdet-style sizes', '']
    if d:
        sizes = ', '.join(f'{h}x{w}' for h, w in d['sizes'])
        out += [f'{d["family"]} (ours), batch {d["batch"]}, {d["precision"]}'
                f', sizes (HxW) {sizes}.', '',
                '| run | graphs compiled | recompilations | first step s | '
                'total s | median s, last half |', '|---|---|---|---|---|---|']
        for label, r in d['runs'].items():
            out.append(f'| {label} | {r["graphs"]} | {r["recompiles"]} | '
                       f'{r["steps"][0]["s"]:.2f} | {r["total_s"]:.2f} | '
                       f'{r["last_half_median_s"]:.4f} |')
    else:
        out.append('Not run (see below).')
    if res['skipped']:
        out += ['', '## Left out', '']
        out += [f'- {k["task"]} {k["family"]} {k["precision"]} '
                f'{k["case"] or ""}: {k["reason"]}' for k in res['skipped']]
    return '\n'.join(out) + '\n'


def summary(res: dict) -> str:
    """A few lines: the checks, training speed at the first case, the
    dynamic study and what was left out."""
    bad = [r for r in res['agreement'] + res['autocast'] if not r['ok']]
    case = next(iter(res['settings']['cases']))
    lines = [f'checks: {"all passed" if not bad else f"{len(bad)} FAILED"} '
             f'({len(res["agreement"])} fp32 agreements, '
             f'{len(res["autocast"])} autocast bounds)']
    for r in bad:
        lines.append(f'  FAILED: {r}')
    rows = [r for r in res['speed'] if r['case'] == case
            and r['mode'] == 'fwd+bwd' and r['precision'] in ('fp32', 'bf16')]
    lines += [f'fwd+bwd at {case}, ms (eager / compiled):']
    for family in res['settings']['families']:
        cells = []
        for prec in ('fp32', 'bf16'):
            for impl in ('mmpoolformer', 'timm'):
                t = {r['compiled']: r['ms'] for r in rows
                     if r['family'] == family and r['impl'] == impl
                     and r['precision'] == prec}
                cells.append(f'{impl[:4]} {prec} {_f(t.get(False))}/'
                             f'{_f(t.get(True))}')
        lines.append(f'  {family}: ' + ', '.join(cells))
    d = res['dynamic']
    if d:
        lines.append('dynamic shapes: ' + ', '.join(
            f'{k} {r["recompiles"]} recompiles {r["total_s"]:.1f} s'
            for k, r in d['runs'].items()))
    lines.append(f'left out: {len(res["skipped"])} compiled measurements; '
                 f'{res["elapsed_s"]:.0f} s in all')
    return '\n'.join(lines)


def write(res: dict, out_dir: str) -> List[str]:
    """``benchmark.json`` (everything) and ``benchmark.md`` (the tables)
    in ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [osp.join(out_dir, 'benchmark.json'),
             osp.join(out_dir, 'benchmark.md')]
    with open(paths[0], 'w') as f:
        json.dump(res, f, indent=1)
    with open(paths[1], 'w') as f:
        f.write(markdown(res))
    return paths
