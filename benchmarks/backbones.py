"""Does this environment build and run every backbone, without the
OpenMMLab task libraries?

    python benchmarks/backbones.py [--device cuda] [--only PoolFormer:s12 ...]

builds every arch of every family, runs one forward and backward on the
device, and names the OpenMMLab packages that imported: mmengine and mmcv
alone (exit 0), or also mmdet, mmseg or mmpretrain (exit 1). Run it first on
a new machine, before the GPU matrix.
"""
import os.path as osp
import sys
from typing import Sequence

import torch

if __package__ in (None, ''):  # run as a script: import the checkout's
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

OPENMMLAB = ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain')


def every_backbone(device: str = 'cpu', only: Sequence[str] = ()):
    """Build every arch of every family (``only``: 'Class:arch' names) and
    run one forward and backward on ``device`` (64x64; RandFormer at the
    224 it is built for): rows of name, parameters and output sizes."""
    import mmpoolformer
    from mmpoolformer.testing.precision import FAMILIES, HYBRID_SIZES

    # the measured families' classes, and RandFormer (built at 224 only)
    classes = [cls for cls, _ in FAMILIES.values()]
    classes.insert(classes.index('MetaFormer'), 'RandFormer')
    rows = []
    for name in classes:
        cls = getattr(mmpoolformer, name)
        archs = HYBRID_SIZES if name == 'MetaFormer' else cls.arch_settings
        for arch in archs:
            if only and f'{name}:{arch}' not in only:
                continue
            model = cls(archs[arch] if name == 'MetaFormer' else arch)
            model.to(device).train()
            side = 224 if name == 'RandFormer' else 64
            outs = model(torch.randn(1, 3, side, side, device=device))
            sum(o.mean() for o in outs).backward()
            rows.append((f'{name}:{arch}',
                         sum(p.numel() for p in model.parameters()),
                         [tuple(o.shape[1:]) for o in outs]))
    if only and len(rows) != len(only):
        raise ValueError(f'unknown backbones in {list(only)}')
    return rows


def main(argv=None):
    """``python benchmarks/backbones.py``: every backbone built and run
    here, and which OpenMMLab packages that imported. Returns the
    exit status: 1 if mmdet, mmseg or mmpretrain were imported (run it in a
    fresh process: one that imported them before cannot tell)."""
    import argparse
    parser = argparse.ArgumentParser(description=main.__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--only', nargs='+', default=(),
                        help="'Class:arch' names (default: all)")
    args = parser.parse_args(argv)
    rows = every_backbone(args.device, args.only)
    for name, params, shapes in rows:
        print(f'{name:24s} {params / 1e6:7.2f}M  {shapes}')
    loaded = [m for m in OPENMMLAB if m in sys.modules]
    print(f'{len(rows)} backbones built and run on {args.device}, torch '
          f'{torch.__version__}; OpenMMLab packages imported: '
          f'{", ".join(loaded)}')
    extra = [m for m in loaded if m not in ('mmengine', 'mmcv')]
    if extra:
        print(f'the backbones needed {extra}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
