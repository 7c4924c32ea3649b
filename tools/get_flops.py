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

from mmengine.config import DictAction

from mmpoolformer.analysis import count_flops


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
    flops, params, shape = count_flops(args.config, args.shape, args.part,
                                 args.cfg_options)
    print(f'{args.config} ({args.part}), input 1x3x{shape[0]}x{shape[1]}:')
    print(f'  FLOPs  {flops / 1e9:.2f} G (multiply-adds)')
    print(f'  params {params / 1e6:.2f} M')


if __name__ == '__main__':
    main()
