"""Convert official / mmpretrain / timm PoolFormer weights, or official / timm
MetaFormer-baseline weights (PoolFormerV2, ConvFormer, CAFormer, ...), to
mmpoolformer's layout once, offline.

    python tools/convert_weights.py poolformer_s12.pth.tar s12_mmpf.pth
    python tools/convert_weights.py caformer_s18.pth caformer_s18_mmpf.pth

The result is a plain state dict that ``init_cfg=dict(type='Pretrained',
checkpoint=DST)`` loads without conversion.
"""
import argparse

import torch

from mmpoolformer.weights import (convert, convert_metaformer,
                                  is_metaformer_checkpoint, read_checkpoint)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint file or URL')
    parser.add_argument('dst', help='output .pth file')
    args = parser.parse_args(argv)
    ckpt = read_checkpoint(args.src)
    # no model to ask here: v2 keys (stem and downsampling norms) tell
    to_ours = convert_metaformer if is_metaformer_checkpoint(ckpt) \
        else convert
    state, dropped, fmt = to_ours(ckpt)
    torch.save(state, args.dst)
    print(f'{args.src}: {fmt} layout, {len(state)} tensors written to '
          f'{args.dst}; dropped {len(dropped)} keys: {sorted(dropped)}')


if __name__ == '__main__':
    main()
