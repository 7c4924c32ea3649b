"""Benchmark PoolFormer backbones: ours against mmpretrain's and timm's.

    python tools/benchmark.py [--arch s12 ...] [--cases det2 seg4] [--runs 5]
    python tools/benchmark.py --arch convformer_s18 caformer_s18
    python tools/benchmark.py --matrix gpu --out DIR [--device cuda]
    python tools/benchmark.py --matrix gpu --device cpu --quick --out DIR

Three modes:

- the CPU matrix (the default; :mod:`benchmarks.cpu`): for each case
  (det1/det2: batch 1/2 at 3 x 800 x 1216, detection's size; seg1/seg4:
  batch 1/4 at 3 x 512 x 512, segmentation's) the forward and
  forward+backward times and peak memory of ours by default and with each
  path forced, mmpretrain's, timm's and the GEMM floor; below each table,
  what ``fused='auto'`` ran and its first call's cost. ``--compile`` adds
  ours and timm's under ``torch.compile`` (compiled afresh for each case;
  the warm-up round compiles), ``--amp`` bf16 autocast tables (and fp16 on
  CUDA), each headed by how far our outputs move from fp32;
- the family comparison: an arch with a family name (timm's model names of
  the MetaFormer baselines) compares ours with timm's eager network;
- the GPU matrix (``--matrix gpu``; :mod:`benchmarks.gpu`): PoolFormer-S12,
  PoolFormerV2-S12, ConvFormer-S18 and CAFormer-S18 against timm: checks,
  eager and compiled speed in fp32/bf16/fp16, compile time, peak memory,
  dynamic shapes, within ``--budget-s`` seconds; writes ``benchmark.md``
  and ``benchmark.json`` to ``--out``, prints a summary and exits 1 if a
  check failed. ``--quick`` runs it on tiny inputs (the tests do, on the
  CPU).

Every mode first names the device (a CPU by its model name and widest
vector extension) and checks that the implementations agree before timing
them. ``--compare`` also prints torch.utils.benchmark's Compare table of the
CPU modes' measurements.

On CPU the timings depend on the allocator: glibc returns large blocks to
the system on free, so every iteration page-faults its activations in again.
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=
68719476736`` (one word) keeps them, for every implementation alike.
"""
import argparse

import torch

from . import cpu, gpu


def matrix(args, parser):
    """``--matrix gpu``: run, write, summarise; exit 1 if a check failed."""
    if not (args.matrix and args.out):
        parser.error('--matrix gpu and --out DIR go together (--quick '
                     'needs both)')
    if torch.device(args.device).type != 'cuda' and not args.quick:
        parser.error(f'--matrix gpu on {args.device}: the full matrix is a '
                     f'GPU measurement; on a CPU add --quick (a test run) '
                     f'or leave out --matrix (the CPU comparison)')
    s = gpu.settings(args.device, args.quick, runs=args.runs,
                     warmup=args.warmup, budget_s=args.budget_s,
                     families=args.families and tuple(args.families))
    try:
        res = gpu.run_matrix(s)
    except RuntimeError as e:
        raise SystemExit(f'benchmark.py: {e}')
    paths = gpu.write(res, args.out)
    print()
    print(gpu.summary(res))
    print('wrote ' + ', '.join(paths))
    if not res['ok']:
        raise SystemExit(1)


def parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', nargs='+', default=['s12'])
    p.add_argument('--cases', nargs='+', default=list(cpu.CASES),
                   choices=list(cpu.CASES))
    p.add_argument('--runs', type=int, default=None,
                   help='timed runs (default 5; the matrix: 15, quick 2)')
    p.add_argument('--warmup', type=int, default=None,
                   help='untimed runs first (default 1; the matrix: 5, '
                   'quick 1)')
    p.add_argument('--device',
                   default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--amp', action='store_true',
                   help='also time bf16 autocast (and fp16 on CUDA)')
    p.add_argument('--compile', action='store_true',
                   help='also time ours and timm under torch.compile '
                   '(the first, untimed run compiles: minutes on CPU)')
    p.add_argument('--no-memory', action='store_true')
    p.add_argument('--compare', action='store_true',
                   help="also print torch.utils.benchmark's Compare table")
    p.add_argument('--matrix', choices=['gpu'],
                   help='run the GPU matrix instead (see above)')
    p.add_argument('--out', help='the matrix\'s output folder')
    p.add_argument('--quick', action='store_true',
                   help='the matrix on tiny inputs (its figures mean '
                   'nothing; the tests run it)')
    p.add_argument('--budget-s', type=float,
                   help='the matrix\'s time budget (default 390 s): '
                   'compiled measurements that would overrun it are '
                   'left out, and listed')
    p.add_argument('--families', nargs='+', choices=gpu.FAMILIES,
                   help='the matrix\'s networks (default: all four; '
                   'quick: poolformer_s12 caformer_s18)')
    return p


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.matrix or args.quick or args.out:
        return matrix(args, p)
    args.runs = 5 if args.runs is None else args.runs
    args.warmup = 1 if args.warmup is None else args.warmup
    cpu.run(args)
