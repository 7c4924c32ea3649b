"""Benchmark PoolFormer backbones: ours against mmpretrain's and timm's.

    python tools/benchmark.py [--arch s12 ...] [--cases det2 seg4] [--runs 5]
    python tools/benchmark.py --arch convformer_s18 caformer_s18
    python tools/benchmark.py --matrix gpu --out DIR [--device cuda]
    python tools/benchmark.py --matrix gpu --device cpu --quick --out DIR

``--matrix gpu`` runs the GPU measurement of
:mod:`mmpoolformer.testing.benchmark` (PoolFormer-S12, PoolFormerV2-S12,
ConvFormer-S18, CAFormer-S18 against timm: checks, eager and compiled speed
in fp32/bf16/fp16, compile time, peak memory, dynamic shapes) within
``--budget-s`` seconds, writes ``benchmark.md`` and ``benchmark.json`` to
``--out`` and prints a summary; it exits 1 if a check failed. ``--quick``
runs it on tiny inputs (CI does, on the CPU). The rest of this text is about
the default, CPU-oriented comparison.

An arch with a family name (timm's model names of the MetaFormer baselines)
compares ours with timm's eager implementation only.

It first names the device (a CPU by its model name and widest vector
extension). For each case (det1/det2: batch 1/2 at 3 x 800 x 1216,
detection's size; seg1/seg4: batch 1/4 at 3 x 512 x 512, segmentation's) it
measures, in one process and interleaved (the order rotating every round),
the median forward (inference, no autograd) and forward+backward (training)
time of every implementation, all holding the same weights (outputs are
checked to agree before anything is timed): ours by default
(``fused='auto'``; below each table, what it ran, its time over the faster
forced path's, and its first call, which measured) and with each path
forced, mmpretrain's, timm's, and the "GEMM floor": the blocks' 1x1
convolutions alone as matrix products, which no fp32 implementation can
beat. Peak memory of one forward+backward is measured in a fresh subprocess
per implementation (growth of the RSS high-water mark on CPU, allocator
peak on CUDA). ``--compile`` adds ours and timm's under ``torch.compile``,
compiled afresh for each case (the warm-up round compiles).
``--amp`` adds bf16 autocast tables (and fp16 on CUDA), each headed by how
far our outputs move from fp32 (largest relative error over the outputs,
on the agreement check's input; tests/test_engine/test_amp_family.py holds
the measured bounds). Prints markdown tables.

On CPU the timings depend on the allocator: glibc returns large blocks to
the system on free, so every iteration page-faults its activations in again.
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=
68719476736`` (one word) keeps them, for every implementation alike.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn

from mmpoolformer import CAFormer, ConvFormer, PoolFormer, PoolFormerV2
from mmpoolformer.testing import benchmark as bench
from mmpoolformer.testing import (TimmFeatures, mmpretrain_poolformer,
                                  official_state, timm_metaformer,
                                  timm_poolformer)
from mmpoolformer.testing.precision import rel
from mmpoolformer.weights import convert, convert_metaformer

CASES = dict(det1=(1, 3, 800, 1216), det2=(2, 3, 800, 1216),
             seg1=(1, 3, 512, 512), seg4=(4, 3, 512, 512))
PEERS = ('mmpretrain', 'timm')  # eager references; compiled timm is a row


class GemmFloor(nn.Module):
    """Only the MLPs' matrix products of every block, channels-last."""

    def __init__(self, model):
        super().__init__()
        self.weights = nn.ParameterList()
        self.plan = []
        for i, stage in enumerate(model.stages):
            for block in stage.blocks:
                w1 = block.mlp.fc1.weight.detach().flatten(1)
                w2 = block.mlp.fc2.weight.detach().flatten(1)
                self.weights.extend([nn.Parameter(w1.t().contiguous()),
                                     nn.Parameter(w2.t().contiguous())])
                self.plan.append(i)
        self.dims = model.dims

    def forward(self, x):
        n, _, h, w = x.shape
        outs, k = [], 0
        for i in range(4):
            s = 2**(i + 2)
            t = torch.zeros(n * -(-h // s) * -(-w // s), self.dims[i],
                            device=x.device, dtype=x.dtype,
                            requires_grad=x.requires_grad)
            for _ in [p for p in self.plan if p == i]:
                t = (t @ self.weights[k]) @ self.weights[k + 1]
                k += 2
            outs.append(t)
        return outs


FAMILIES = dict(poolformerv2=PoolFormerV2, convformer=ConvFormer,
                caformer=CAFormer)


def build_family(name):
    """Ours and timm's MetaFormer baseline ``name`` (e.g. 'caformer_s18')
    with the same (randomised) weights and fresh output norms."""
    family, arch = name.split('_')
    cls = FAMILIES[family]
    ref = timm_metaformer(name)
    state = convert_metaformer(ref.state_dict())[0]
    impls = {}
    for key, with_cp in (('mmpoolformer', False),
                         ('mmpoolformer with_cp', True)):
        ours = cls(arch, with_cp=with_cp)
        ours.load_state_dict({**ours.state_dict(), **state})
        impls[key] = ours
    if impls['mmpoolformer'].arch['norm'] == 'sample':
        impls['timm'] = TimmFeatures(ref)
    else:
        from timm.layers import LayerNorm2d
        impls['timm'] = TimmFeatures(ref, lambda c: LayerNorm2d(c, eps=1e-6))
    return impls


def build(arch, compile=False):
    """Every implementation with the same (randomised) weights; with
    ``compile``, ours and timm's also under ``torch.compile``."""
    if '_' in arch:
        return build_family(arch)
    ref = mmpretrain_poolformer(arch, fresh_norms=True)
    state, _, _ = convert({f'backbone.{k}': v
                           for k, v in ref.state_dict().items()})
    impls = {}
    for name, kwargs in [('mmpoolformer', {}),
                         ('mmpoolformer fused=True', dict(fused=True)),
                         ('mmpoolformer fused=False', dict(fused=False)),
                         ('mmpoolformer with_cp', dict(with_cp=True))]:
        impls[name] = PoolFormer(arch, **kwargs)
        impls[name].load_state_dict(state)
    timm = TimmFeatures(timm_poolformer(arch, official_state(ref)))
    impls.update({'mmpretrain': ref, 'timm': timm,
                  'GEMM floor': GemmFloor(impls['mmpoolformer'])})
    if compile:
        compiled = PoolFormer(arch, torch_compile=True)
        compiled.load_state_dict(state)
        impls['mmpoolformer torch_compile'] = compiled
        impls['timm torch.compile'] = torch.compile(timm)
    return impls


def agreement_input(device):
    return torch.randn(1, 3, 128, 160, device=device,
                       generator=torch.Generator(device).manual_seed(0))


def check_agreement(impls, device):
    x = agreement_input(device)
    with torch.no_grad():
        # compiled ones would compile twice (and dynamically) for a second
        # shape; tests/test_models/test_fused.py checks them
        outs = {k: m(x) for k, m in impls.items()
                if k != 'GEMM floor' and 'compile' not in k}
    ref = 'mmpretrain' if 'mmpretrain' in outs else 'timm'
    for name, out in outs.items():
        for a, b in zip(out, outs[ref]):
            err = (a - b).abs().max().item()
            if err > 1e-4:
                raise SystemExit(f'{name} disagrees with {ref} by {err}')


AMP_DTYPES = dict(bf16=torch.bfloat16, fp16=torch.float16)


def amp_error(model, device, amp):
    """Largest relative error of ``model``'s outputs under ``amp``
    autocast against fp32, on the agreement check's input."""
    x = agreement_input(device)
    with torch.no_grad():
        ref = step(model, x, False, None)
        outs = step(model, x, False, amp)
    return max(rel(a.float(), b) for a, b in zip(outs, ref))


def step(model, x, backward, amp):
    """One forward (and backward); ``amp``: None (fp32), 'bf16' or 'fp16'
    autocast."""
    with torch.autocast(x.device.type, AMP_DTYPES.get(amp),
                        enabled=amp is not None):
        outs = model(x)
        if backward:
            sum(o.float().mean() for o in outs).backward()
    return outs


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def time_all(impls, shape, device, runs, warmup, amp):
    """Median forward (``(name, False)``) and forward+backward
    (``(name, True)``) seconds of each implementation after ``warmup``
    untimed rounds, interleaved; the order rotates every round, so that no
    implementation always runs after the same neighbour (whose freed memory
    and cache state it would meet). Also ``('first', name, backward)``: the
    time of its first run."""
    x = torch.randn(*shape, device=device)
    names = list(impls)
    times = {(k, b): [] for k in impls for b in (False, True)}
    first = {}
    for backward in (False, True):
        xin = x.requires_grad_(False)
        for r in range(warmup + runs):
            # round 0 runs ours by default last, after the others have paid
            # the shape's one-time costs: its first run's excess over its
            # median is then 'auto''s measurement
            k = (r + 1) % len(names)
            for name in names[k:] + names[:k]:
                model = impls[name]
                model.zero_grad(set_to_none=True)
                sync(device)
                t0 = time.perf_counter()
                with torch.set_grad_enabled(backward):
                    step(model, xin, backward, amp)
                sync(device)
                took = time.perf_counter() - t0
                if r == 0:
                    first[('first', name, backward)] = took
                if r >= warmup:
                    times[(name, backward)].append(took)
    return {**{k: statistics.median(v) for k, v in times.items()}, **first}


FORCED = ('mmpoolformer fused=True', 'mmpoolformer fused=False')


def auto_line(impls, t, shape, device, amp):
    """What ``fused='auto'`` ran at this point, per stage (F: fast path,
    O: op by op), in inference and in training, and the default's time over
    the faster forced path's (1.00x: the default is the fastest); '' where
    the point has no forced rows (the families)."""
    model = impls.get('mmpoolformer')
    if not all(k in impls for k in FORCED):
        return ''
    x = torch.randn(*shape, device=device)
    parts = []
    for backward in (False, True):
        with torch.set_grad_enabled(backward):  # decided during the timing
            step(model, x, False, amp)
        ran = ''.join('F' if s.ran_fast else 'O' for s in model.stages)
        best = min(t[(k, backward)] for k in FORCED)
        # autocast runs op by op without measuring
        first = None if amp else t.get(('first', 'mmpoolformer', backward))
        cost = '' if first is None else (
            f'; its first call, which measured, {1e3 * first:.0f} ms, '
            f'later ones {1e3 * t[("mmpoolformer", backward)]:.0f} ms')
        parts.append(f'{"training" if backward else "inference"} {ran} '
                     f'(time {t[("mmpoolformer", backward)] / best:.2f}x '
                     f"the faster forced path's{cost})")
    return f"`fused='auto'` ran, stages 0-3: {', '.join(parts)}\n"


def peak_memory_child(arch, impl, case, device, amp):
    """Run in a subprocess: peak memory (MB) of one forward+backward."""
    device = torch.device(device)
    model = build(arch, 'compile' in impl)[impl].to(device)
    model.train()
    x = torch.randn(*CASES[case], device=device)
    if 'compile' in impl:  # measure a run, not the compilation
        step(model, x, True, amp)
        model.zero_grad(set_to_none=True)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(model, x, True, amp)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    # ru_maxrss survives exec (it would hold the parent's peak): use this
    # process's own high-water mark, reset to the current RSS first.
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    base = _status_kb('VmRSS')
    step(model, x, True, amp)
    return (_status_kb('VmHWM') - base) / 1024


def _status_kb(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def peak_memory(arch, impl, case, device, amp):
    out = subprocess.run(
        [sys.executable, __file__, '--child', json.dumps(
            [arch, impl, case, device, amp])],
        capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def matrix(args, parser):
    """``--matrix gpu``: run, write, summarise; exit 1 if a check failed."""
    if not (args.matrix and args.out):
        parser.error('--matrix gpu and --out DIR go together (--quick '
                     'needs both)')
    if torch.device(args.device).type != 'cuda' and not args.quick:
        parser.error(f'--matrix gpu on {args.device}: the full matrix is a '
                     f'GPU measurement; on a CPU add --quick (a test run) '
                     f'or leave out --matrix (the CPU comparison)')
    s = bench.settings(args.device, args.quick, runs=args.runs,
                       warmup=args.warmup, budget_s=args.budget_s,
                       families=args.families and tuple(args.families))
    try:
        res = bench.run_matrix(s)
    except RuntimeError as e:
        raise SystemExit(f'benchmark.py: {e}')
    paths = bench.write(res, args.out)
    print()
    print(bench.summary(res))
    print('wrote ' + ', '.join(paths))
    if not res['ok']:
        raise SystemExit(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', nargs='+', default=['s12'])
    parser.add_argument('--cases', nargs='+', default=list(CASES),
                        choices=list(CASES))
    parser.add_argument('--runs', type=int, default=None,
                        help='timed runs (default 5; the matrix: 15, quick 2)')
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed runs first (default 1; the matrix: 5, '
                        'quick 1)')
    parser.add_argument('--device',
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', action='store_true',
                        help='also time bf16 autocast (and fp16 on CUDA)')
    parser.add_argument('--compile', action='store_true',
                        help='also time ours and timm under torch.compile '
                        '(the first, untimed run compiles: minutes on CPU)')
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--matrix', choices=['gpu'],
                        help='run the GPU matrix instead (see above)')
    parser.add_argument('--out', help='the matrix\'s output folder')
    parser.add_argument('--quick', action='store_true',
                        help='the matrix on tiny inputs (its figures mean '
                        'nothing; CI runs it)')
    parser.add_argument('--budget-s', type=float,
                        help='the matrix\'s time budget (default 390 s): '
                        'compiled measurements that would overrun it are '
                        'left out, and listed')
    parser.add_argument('--families', nargs='+', choices=bench.FAMILIES,
                        help='the matrix\'s networks (default: all four; '
                        'quick: poolformer_s12 caformer_s18)')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(peak_memory_child(*json.loads(args.child)))
        return
    if args.matrix or args.quick or args.out:
        return matrix(args, parser)
    args.runs = 5 if args.runs is None else args.runs
    args.warmup = 1 if args.warmup is None else args.warmup
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' \
        else bench.cpu_name()
    print(f'device: {args.device} ({name}, {torch.get_num_threads()} '
          f'threads), torch {torch.__version__}\n')
    for arch in args.arch:
        impls = build(arch, args.compile)
        for m in impls.values():
            m.to(device).train()  # mmpretrain's train() returns None
        check_agreement(impls, device)
        precisions = [None]
        if args.amp:
            precisions += ['bf16', 'fp16'] if device.type == 'cuda' \
                else ['bf16']
        for amp in precisions:
            for case in args.cases:
                shape = CASES[case]
                if args.compile:
                    # each point compiles for its own shape, as a run at
                    # that size would: without a reset, the second shape
                    # recompiles the models with dynamic shapes
                    bench.fresh_dynamo()
                t = time_all(impls, shape, device, args.runs, args.warmup,
                             amp)
                # ratios to the fastest peer in each column
                best = {b: min(t[(k, b)] for k in PEERS if k in impls)
                        for b in (False, True)}
                print(f'### {arch} {case} {"x".join(map(str, shape))}'
                      f' {amp + " autocast" if amp else "fp32"}\n')
                if amp:
                    err = amp_error(impls['mmpoolformer'], device, amp)
                    print(f'mmpoolformer\'s outputs under {amp} autocast: '
                          f'largest relative error {err:.1e} against '
                          f'fp32\n')
                print('| implementation | forward ms | fwd+bwd ms | forward '
                      'vs fastest peer | fwd+bwd vs fastest peer | peak MB '
                      '(fwd+bwd) |')
                print('|---|---|---|---|---|---|')
                for name in impls:
                    mem = '-' if args.no_memory else '%.0f' % peak_memory(
                        arch, name, case, args.device, amp)
                    print(f'| {name} | {1e3 * t[(name, False)]:.0f} | '
                          f'{1e3 * t[(name, True)]:.0f} | '
                          f'{best[False] / t[(name, False)]:.2f}x | '
                          f'{best[True] / t[(name, True)]:.2f}x | {mem} |')
                print()
                line = auto_line(impls, t, shape, device, amp)
                if line:
                    print(line)


if __name__ == '__main__':
    main()
