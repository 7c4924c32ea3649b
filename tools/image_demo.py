"""Draw a detector's or segmentor's predictions on an image, save a PNG.

    python tools/image_demo.py IMAGE CONFIG --weights CKPT --out pred.png

Uses mmdet's DetInferencer or mmseg's MMSegInferencer, chosen by the
config's default_scope.
"""
import argparse
import os
import os.path as osp

import cv2
import numpy as np
from mmengine.config import Config

import mmpoolformer  # noqa: F401  (registers the backbone)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw predictions')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('--weights', help='checkpoint (random init if none)')
    parser.add_argument('--out', default='outputs/pred.png',
                        help='output PNG')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection score threshold')
    return parser.parse_args(argv)


def lower_model_threshold(cfg, score_thr):
    """Lower a detector's own test threshold (``score_thr`` in its
    ``test_cfg``, or ``test_cfg.rcnn`` for two stages), which drops boxes
    before ``--score-thr`` is applied, to ``score_thr``. Returns a line
    saying so, or None."""
    test_cfg = cfg.model.get('test_cfg') or {}
    for where, node in (('test_cfg', test_cfg),
                        ('test_cfg.rcnn', test_cfg.get('rcnn'))):
        own = node.get('score_thr') if isinstance(node, dict) else None
        if own is not None and own > score_thr:
            node['score_thr'] = score_thr
            return (f"the model's own {where}.score_thr {own} lowered to "
                    f'--score-thr {score_thr}')
    return None


def describe(scope, pred, classes, score_thr):
    """A line per detection, or the share of each predicted class."""
    lines = []
    if scope == 'mmdet':
        for label, score, box in zip(pred['labels'], pred['scores'],
                                     pred['bboxes']):
            if score >= score_thr:
                lines.append(f'  {classes[label]:<12} {score:.2f}  box '
                             f'{[round(v) for v in box]}')
        return f'{len(lines)} detections >= {score_thr}:', lines
    seg = np.asarray(pred['sem_seg'] if isinstance(pred, dict) else pred)
    ids, counts = np.unique(seg, return_counts=True)
    for i, c in sorted(zip(ids, counts), key=lambda t: -t[1]):
        lines.append(f'  {classes[i]:<12} {100 * c / seg.size:5.1f}% of '
                     'pixels')
    return f'{len(ids)} classes predicted:', lines


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.image):
        raise SystemExit(f'image not found: {args.image}')
    cfg = Config.fromfile(args.config)
    if not args.weights:
        cfg.model.backbone.init_cfg = None
        print('no --weights: the model is randomly initialised')
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        lowered = lower_model_threshold(cfg, args.score_thr)
        if lowered:
            print(lowered)
        inferencer = DetInferencer(cfg, args.weights, device=args.device)
        out = inferencer(args.image, return_vis=True, no_save_vis=True,
                         pred_score_thr=args.score_thr)
    elif scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(cfg, args.weights, device=args.device)
        out = inferencer(args.image, return_vis=True)
    else:
        raise SystemExit(f'config scope must be mmdet or mmseg, got {scope}')
    pred = out['predictions']
    pred = pred[0] if isinstance(pred, list) else pred
    classes = inferencer.model.dataset_meta['classes']
    head, lines = describe(scope, pred, classes, args.score_thr)
    print(head)
    print('\n'.join(lines))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, out['visualization'][0][..., ::-1])
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
