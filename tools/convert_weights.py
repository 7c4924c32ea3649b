"""Convert official / mmpretrain / timm PoolFormer weights, official / timm
MetaFormer-baseline weights (PoolFormerV2, ConvFormer, CAFormer, ...), or a
whole detector or segmentor (the authors' mmdet 2.19 / mmseg 0.19 releases)
to mmpoolformer's layout once, offline.

    python tools/convert_weights.py poolformer_s12.pth.tar s12_mmpf.pth
    python tools/convert_weights.py caformer_s18.pth caformer_s18_mmpf.pth
    python tools/convert_weights.py retinanet_s12.pth retinanet_s12_mmpf.pth

A backbone's weights become a plain state dict that ``init_cfg=dict(
type='Pretrained', checkpoint=DST)`` loads without conversion. A whole model
becomes an mmengine checkpoint (``meta`` with ``dataset_meta``, and
``state_dict``) that its config loads strictly; our models also read the
release as it is (see configs/detection/README.md).
"""
import argparse

import torch

from mmpoolformer.weights import (convert, convert_metaformer,
                                  convert_release, is_metaformer_checkpoint,
                                  is_whole_model, read_checkpoint)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint file or URL')
    parser.add_argument('dst', help='output .pth file')
    args = parser.parse_args(argv)
    ckpt = read_checkpoint(args.src)
    if is_whole_model(ckpt):
        out, fmt, dropped = convert_release(ckpt)
        torch.save(out, args.dst)
        classes = out['meta'].get('dataset_meta', {}).get('classes', ())
        if fmt == 'mmpretrain':  # the authors' dense models share its names
            fmt = "the authors' (mmpretrain)"
        print(f'{args.src}: a whole model, backbone in {fmt} layout; '
              f'{len(out["state_dict"])} tensors and {len(classes)} class '
              f'names written to {args.dst}; dropped {len(dropped)} '
              f'backbone keys {sorted(dropped)} and the optimizer state')
        return
    # no model to ask here: v2 keys (stem and downsampling norms) tell
    to_ours = convert_metaformer if is_metaformer_checkpoint(ckpt) \
        else convert
    state, dropped, fmt = to_ours(ckpt)
    torch.save(state, args.dst)
    print(f'{args.src}: {fmt} layout, {len(state)} tensors written to '
          f'{args.dst}; dropped {len(dropped)} keys: {sorted(dropped)}')


if __name__ == '__main__':
    main()
