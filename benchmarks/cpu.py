"""The CPU matrix and the family comparison (``tools/benchmark.py`` without
``--matrix``).

For each case (:data:`CASES`) it measures, in one process and interleaved
(:func:`.harness.time_all`), the median forward (inference, no autograd)
and forward+backward (training) time of every implementation, all holding
the same weights (outputs are checked to agree before anything is timed):
for PoolFormer v1 (an arch such as ``s12``) ours by default
(``fused='auto'``; below each table, what it ran, its time over the faster
forced path's, and its first call, which measured) and with each path
forced, mmpretrain's, timm's, and the "GEMM floor" (:class:`GemmFloor`);
for a family name (``convformer_s18``) ours and timm's eager network. Peak
memory of one forward+backward is measured in a fresh subprocess per
implementation (growth of the RSS high-water mark on CPU, allocator peak on
CUDA). Prints markdown tables.
"""
import json
import subprocess
import sys

import torch
import torch.nn as nn

from mmpoolformer import PoolFormer
from mmpoolformer.testing.precision import rel
from mmpoolformer.testing.reference import (TimmFeatures,
                                            mmpretrain_poolformer,
                                            official_state, timm_poolformer)
from mmpoolformer.weights import convert

from . import harness
from .harness import PRECISIONS, Pair, step

CASES = dict(det1=(1, 3, 800, 1216), det2=(2, 3, 800, 1216),
             seg1=(1, 3, 512, 512), seg4=(4, 3, 512, 512))
PEERS = ('mmpretrain', 'timm')  # eager references; compiled timm is a row
FORCED = ('mmpoolformer fused=True', 'mmpoolformer fused=False')


class GemmFloor(nn.Module):
    """Only the MLPs' matrix products of every block, channels-last: what no
    fp32 implementation can beat."""

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


def build(arch, compile=False):
    """Every implementation with the same (randomised) weights; with
    ``compile``, ours and timm's also under ``torch.compile``. A family
    name (e.g. 'caformer_s18'): ours (also with ``with_cp``) and timm's."""
    if '_' in arch:
        return Pair(arch, variants={
            'mmpoolformer': {},
            'mmpoolformer with_cp': dict(with_cp=True)}).impls
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


def amp_error(model, device, amp):
    """Largest relative error of ``model``'s outputs under ``amp``
    autocast against fp32, on the agreement check's input."""
    x = agreement_input(device)
    with torch.no_grad():
        ref = step(model, x, False)
        outs = step(model, x, False, PRECISIONS[amp])
    return max(rel(a.float(), b) for a, b in zip(outs, ref))


def auto_line(impls, t, shape, device, amp):
    """What ``fused='auto'`` ran at this point, per stage (F: fast path,
    O: op by op), in inference and in training, and the default's time over
    the faster forced path's (1.00x: the default is the fastest); '' where
    the point has no forced rows (the families)."""
    model = impls.get('mmpoolformer')
    if not all(k in impls for k in FORCED):
        return ''
    x = torch.randn(*shape, device=device)
    dtype = PRECISIONS[amp] if amp else None
    parts = []
    for backward in (False, True):
        # decided during the timing: a forward in the pass's grad mode
        with torch.set_grad_enabled(backward), torch.autocast(
                device.type, dtype=dtype, enabled=dtype is not None):
            model(x)
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
    dtype = PRECISIONS[amp] if amp else None
    model = build(arch, 'compile' in impl)[impl].to(device)
    model.train()
    x = torch.randn(*CASES[case], device=device)
    if 'compile' in impl:  # measure a run, not the compilation
        step(model, x, True, dtype)
        model.zero_grad(set_to_none=True)
    if device.type == 'cuda':
        return harness.peak_mib(model, x, True, dtype)
    return harness.rss_peak_mib(lambda: step(model, x, True, dtype))


CHILD = ('import json, sys\n'
         'sys.path.insert(0, sys.argv[1])\n'
         'from benchmarks.cpu import peak_memory_child\n'
         'print(peak_memory_child(*json.loads(sys.argv[2])))\n')


def peak_memory(arch, impl, case, device, amp):
    """:func:`peak_memory_child` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, '-c', CHILD, harness.ROOT,
         json.dumps([arch, impl, case, device, amp])],
        capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run(args):
    """Print the tables (markdown) for ``args`` (of :mod:`.cli`); with
    ``args.compare`` also torch's :class:`~torch.utils.benchmark.Compare`
    table of every measurement."""
    device = torch.device(args.device)
    print(f'device: {args.device} ({harness.device_name(device)}, '
          f'{torch.get_num_threads()} threads), torch {torch.__version__}\n')
    measurements = []
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
                    harness.fresh_dynamo()
                title = (f'{arch} {case} {"x".join(map(str, shape))}'
                         f' {amp + " autocast" if amp else "fp32"}')
                t = harness.time_all(
                    impls, torch.randn(*shape, device=device), args.runs,
                    args.warmup, PRECISIONS[amp] if amp else None, title)
                measurements += t.measurements
                print(table(arch, case, shape, amp, impls, t, device, args))
                line = auto_line(impls, t, shape, device, amp)
                if line:
                    print(line)
    if args.compare:
        print(harness.compare(measurements))


def table(arch, case, shape, amp, impls, t, device, args):
    """One point's markdown: heading, autocast error, the rows; ratios to
    the fastest peer in each column."""
    best = {b: min(t[(k, b)] for k in PEERS if k in impls)
            for b in (False, True)}
    out = [f'### {arch} {case} {"x".join(map(str, shape))}'
           f' {amp + " autocast" if amp else "fp32"}', '']
    if amp:
        err = amp_error(impls['mmpoolformer'], device, amp)
        out += [f'mmpoolformer\'s outputs under {amp} autocast: largest '
                f'relative error {err:.1e} against fp32', '']
    out += ['| implementation | forward ms | fwd+bwd ms | forward vs fastest '
            'peer | fwd+bwd vs fastest peer | peak MB (fwd+bwd) |',
            '|---|---|---|---|---|---|']
    for name in impls:
        mem = '-' if args.no_memory else '%.0f' % peak_memory(
            arch, name, case, args.device, amp)
        out.append(f'| {name} | {1e3 * t[(name, False)]:.0f} | '
                   f'{1e3 * t[(name, True)]:.0f} | '
                   f'{best[False] / t[(name, False)]:.2f}x | '
                   f'{best[True] / t[(name, True)]:.2f}x | {mem} |')
    return '\n'.join(out) + '\n'
