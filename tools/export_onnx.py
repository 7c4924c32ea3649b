"""Export a detector's or segmentor's raw outputs (or its backbone) to ONNX
and check the file with onnxruntime against PyTorch on the same input.

    python tools/export_onnx.py CONFIG CHECKPOINT OUT.onnx \
        [--part model|backbone] [--shape H W] [--dynamo]

``--part model``: a segmentor's logits; a one-stage detector's backbone,
neck and head maps; a two-stage detector's features and RPN maps. Post-
processing (box decoding, NMS, RoI heads) is not exported. The TorchScript
exporter (``dynamo=False``, the one deployment toolchains drive) is the
default; ``--dynamo`` uses torch.export's. Exits non-zero when onnxruntime
and PyTorch disagree by more than ``--tol`` of an output's scale.
"""
import argparse

import numpy as np
import torch

from mmpoolformer.analysis import DEFAULT_SHAPES, RawOutputs, build_model

from mmpoolformer.torchapi import onnx_export


def export(config, checkpoint, out, part='model', shape=None, dynamo=False,
           opset=17):
    """Export and check; returns the largest difference of each output,
    relative to its scale (at least 1)."""
    import onnxruntime as ort
    model, cfg = build_model(config, checkpoint)
    wrapper = RawOutputs(model, part).eval()
    shape = tuple(shape or DEFAULT_SHAPES[cfg.default_scope])
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = wrapper(x)
    names = [f'out{i}' for i in range(len(expected))]
    onnx_export(wrapper, x, out, dynamo, input_names=['image'],
                output_names=names, opset_version=opset)
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    if len(got) != len(expected):
        raise SystemExit(f'{out}: onnxruntime returned {len(got)} outputs, '
                         f'PyTorch {len(expected)}')
    errors = []
    for name, a, b in zip(names, got, expected):
        b = b.numpy()
        if a.shape != b.shape:
            raise SystemExit(f'{out}: {name} has shape {a.shape} in '
                             f'onnxruntime, {b.shape} in PyTorch')
        errors.append(float(np.abs(a - b).max() / max(1., np.abs(b).max())))
    return names, [tuple(t.shape) for t in expected], errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--part', default='model',
                        choices=['model', 'backbone'])
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help=f'input size (default: {DEFAULT_SHAPES})')
    parser.add_argument('--dynamo', action='store_true',
                        help="torch.export's exporter instead of "
                        "TorchScript's")
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--tol', type=float, default=1e-4,
                        help='largest allowed difference, relative to each '
                        "output's scale")
    args = parser.parse_args(argv)
    names, shapes, errors = export(args.config, args.checkpoint, args.out,
                                   args.part, args.shape, args.dynamo,
                                   args.opset)
    print(f'wrote {args.out}; onnxruntime vs PyTorch, max |difference| / '
          f'scale:')
    for name, shape, err in zip(names, shapes, errors):
        print(f'  {name} {list(shape)}: {err:.2e}')
    if max(errors) > args.tol:
        raise SystemExit(f'onnxruntime disagrees with PyTorch by '
                         f'{max(errors):.2e} > {args.tol}')


if __name__ == '__main__':
    main()
