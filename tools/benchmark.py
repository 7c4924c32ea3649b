"""Benchmark PoolFormer backbones: ours against mmpretrain's and timm's.

    python tools/benchmark.py [--arch s12 ...] [--cases det2 seg4] [--runs 5]
    python tools/benchmark.py --arch convformer_s18 caformer_s18
    python tools/benchmark.py --matrix gpu --out DIR [--device cuda]

The harness is the checkout's ``benchmarks/`` folder (``python tools/
benchmark.py --help`` lists the modes and options; docs/benchmarks.md has
the results): this command runs from a checkout of mmpoolformer, not from
the installed package, which does not carry it.
"""
import os.path as osp
import sys

# realpath: an editable install's mmpoolformer/.mim/tools links here
ROOT = osp.dirname(osp.dirname(osp.realpath(__file__)))


def main(argv=None):
    if not osp.isfile(osp.join(ROOT, 'benchmarks', 'cli.py')):
        raise SystemExit(
            f'benchmark.py: the benchmark harness is the benchmarks/ folder '
            f'of a checkout of mmpoolformer, and {ROOT} has none (the '
            f'installed package does not carry it): clone the repository '
            f'and run python tools/benchmark.py from its root')
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from benchmarks.cli import main as run
    return run(argv)


if __name__ == '__main__':
    main()
