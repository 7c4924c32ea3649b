"""FLOPs and parameters of a detector, segmentor or its backbone, counted by
mmengine's analysis module (FLOPs are multiply-adds, as the paper counts).

    python tools/get_flops.py CONFIG [--shape H W] [--part backbone|model]

mmseg 1.2.2's own get_flops.py fails on this stack ("input_shape" and
"inputs" cannot be both set) and mmdet's reads the dataset from disk; this
one needs neither. A two-stage detector is counted whole (1000 proposals
through the RoI head), as mmdet counts it. Attention's two matrix products
are counted too (mmengine's counter skips ``scaled_dot_product_attention``,
which our attention calls), as counters that see the matmuls do.
"""
import argparse

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape
from mmengine.config import DictAction

from cli import DEFAULT_SHAPES, RawOutputs, build_model, det_samples


def sdpa_flops(inputs, outputs):
    """Multiply-adds of ``softmax(q k^T) v``: q k^T and the product with v
    (q: [..., L, E], k: [..., S, E], v: [..., S, Ev])."""
    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = 1
    for n in q[:-2]:
        batch *= n
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def count(config, shape=None, part='model', cfg_options=None):
    """Returns (flops, params, (H, W)) of ``config``'s model."""
    model, cfg = build_model(config, cfg_options=cfg_options)
    shape = tuple(shape or DEFAULT_SHAPES[cfg.default_scope])
    wrapper = RawOutputs(model, part)
    if part == 'model' and wrapper.two_stage:
        # counted whole: proposals through the RoI head
        wrapper.data_samples = det_samples(1, shape)
    x = torch.randn(1, 3, *shape)
    with torch.no_grad():
        analyzer = FlopAnalyzer(wrapper, (x, )).set_op_handle(
            'aten::scaled_dot_product_attention', sdpa_flops)
        analyzer.unsupported_ops_warnings(False)
        flops = analyzer.total()
    module = model.backbone if part == 'backbone' else model
    params = sum(p.numel() for p in module.parameters())
    return flops, params, shape


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 800 1344 for detection, '
                        '512 512 for segmentation)')
    parser.add_argument('--part', default='model',
                        choices=['model', 'backbone'])
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    flops, params, shape = count(args.config, args.shape, args.part,
                                 args.cfg_options)
    print(f'{args.config} ({args.part}), input 1x3x{shape[0]}x{shape[1]}:')
    print(f'  FLOPs  {flops / 1e9:.2f} G (multiply-adds)')
    print(f'  params {params / 1e6:.2f} M')


if __name__ == '__main__':
    main()
