"""The embedded demo: PoolFormer-S12 detection and segmentation end to end on
CPU, with no download.

1. writes a seeded synthetic dataset (data/shapes, COCO and ADE20K formats);
2. for RetinaNet and Semantic FPN (configs/demo/, the real configs with only
   data, image size and schedule changed): evaluates the untrained model with
   tools/test.py, trains from scratch with tools/train.py, evaluates again;
3. saves predictions on held-out images and loss/metric curves as PNGs and
   prints untrained vs trained figures against the targets.

Run from the repository root: ``make demo`` or ``python tools/demo.py``.
``--quick`` runs a few iterations only (for tests; no targets).
"""
import argparse
import glob
import json
import logging
import os
import os.path as osp
import subprocess
import sys
import time
import warnings

# mmengine imports pkg_resources, which setuptools marks deprecated: noise here
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))

TASKS = dict(
    det=dict(config='configs/demo/retinanet_poolformer_s12_shapes.py',
             metric='coco/bbox_mAP_50', target=0.5, label='bbox AP50',
             extra=['coco/bbox_mAP'],
             quick=['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                    'default_hooks.logger.interval=1']),
    seg=dict(config='configs/demo/fpn_poolformer_s12_shapes.py',
             metric='mIoU', target=55.0, label='mIoU (%)', extra=['aAcc'],
             quick=['train_cfg.max_iters=3', 'train_cfg.val_interval=3',
                    'default_hooks.checkpoint.interval=3',
                    'default_hooks.logger.interval=1']),
)
PROGRESS = ('Epoch(train)', 'Iter(train)', 'Epoch(val)', 'Iter(val)',
            'Epoch(test)', 'Iter(test)', 'Resuming', 'Error')


def stream(cmd, log_path):
    """Run ``cmd``, echo its progress lines, keep the whole log."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)
        for line in proc.stdout:
            log.write(line)
            if any(p in line for p in PROGRESS):
                print('    ' + line.rstrip().split(' - INFO - ')[-1],
                      flush=True)
        if proc.wait() != 0:
            raise SystemExit(f'{" ".join(cmd)} failed; log: {log_path}')


def tool(name, *args):
    return [sys.executable, osp.join(REPO, 'tools', name), *args]


def untrained_checkpoint(config, path):
    """Save the randomly initialised model, the 'before' of the table."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    logging.disable(logging.INFO)  # mmengine's per-parameter init report
    try:
        model.init_weights()
    finally:
        logging.disable(logging.NOTSET)
    meta = cfg.train_dataloader.dataset.get('metainfo')
    torch.save({'meta': {'dataset_meta': dict(meta) if meta else {}},
                'state_dict': model.state_dict()}, path)


def evaluate(config, ckpt, work_dir, show_dir=None, quick=()):
    os.makedirs(work_dir, exist_ok=True)
    args = [config, ckpt, '--work-dir', work_dir]
    if show_dir:
        args += ['--show-dir', show_dir]
    if quick:
        args += ['--cfg-options', *quick]
    stream(tool('test.py', *args), osp.join(work_dir, 'test.log'))
    with open(osp.join(work_dir, 'test_metrics.json')) as f:
        return json.load(f)


def plot_curves(work_dir, task, out_path):
    """Loss per logged iteration and the validation metric, from mmengine's
    scalars.json."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    # one run directory per run, named by its start time (YYYYMMDD_HHMMSS):
    # the newest sorts last
    runs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))
    if not runs:
        raise FileNotFoundError(f'no */vis_data/scalars.json in {work_dir}')
    scalars = runs[-1]
    train, val = [], []
    metric = TASKS[task]['metric']
    with open(scalars) as f:
        for line in f:
            rec = json.loads(line)
            if 'loss' in rec:
                train.append((rec['step'] if task == 'seg' else rec['iter'],
                              rec['loss']))
            if metric in rec:
                val.append((rec['step'], rec[metric]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(*zip(*train))
    ax1.set(title=f'{task}: training loss', xlabel='iteration',
            ylabel='loss')
    if val:
        ax2.plot(*zip(*val), marker='o')
    ax2.set(title=f'{task}: held-out {TASKS[task]["label"]}',
            xlabel='epoch' if task == 'det' else 'iteration')
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def prediction_grid(show_dir, out_path, n=4):
    import cv2
    import numpy as np
    files = sorted(f for f in glob.glob(osp.join(show_dir, '**', '*'),
                                        recursive=True)
                   if f.lower().endswith(('.jpg', '.png')))[:n]
    images = [cv2.imread(f) for f in files]
    h = max(i.shape[0] for i in images)
    images = [cv2.copyMakeBorder(i, 0, h - i.shape[0], 0, 4,
                                 cv2.BORDER_CONSTANT, value=(255, ) * 3)
              for i in images]
    cv2.imwrite(out_path, np.hstack(images))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='a few iterations on a small dataset (tests)')
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument('--tasks', nargs='+', default=['det', 'seg'],
                        choices=list(TASKS))
    args = parser.parse_args(argv)
    from mmpoolformer.datasets import make_dataset

    start = time.time()
    os.makedirs(args.out_dir, exist_ok=True)
    sizes = (16, 4) if args.quick else (240, 40)
    stamp = f'data/shapes/.done-{sizes[0]}-{sizes[1]}'
    if not osp.exists(stamp):
        print(f'[demo] writing synthetic dataset to data/shapes '
              f'({sizes[0]} train / {sizes[1]} held-out images)', flush=True)
        make_dataset('data/shapes', *sizes, size=128, seed=0)
        open(stamp, 'w').close()

    rows, pictures = [], []
    for task in args.tasks:
        spec = TASKS[task]
        config = osp.join(REPO, spec['config'])
        work = osp.join('work_dirs', f'demo_{task}')
        os.makedirs(work, exist_ok=True)
        quick = spec['quick'] if args.quick else []
        print(f'[demo] {task}: evaluating the untrained model', flush=True)
        ckpt0 = osp.join(work, 'untrained.pth')
        untrained_checkpoint(config, ckpt0)
        before = evaluate(config, ckpt0, osp.join(work, 'untrained'),
                          quick=quick)
        print(f'[demo] {task}: training from scratch ({spec["config"]})',
              flush=True)
        train_args = [config, '--work-dir', work]
        if quick:
            train_args += ['--cfg-options', *quick]
        stream(tool('train.py', *train_args), osp.join(work, 'train.log'))
        with open(osp.join(work, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
        print(f'[demo] {task}: evaluating {ckpt} on the held-out split',
              flush=True)
        vis = osp.join(work, 'vis')
        after = evaluate(config, ckpt, osp.join(work, 'trained'), vis,
                         quick=quick)
        curves = osp.join(args.out_dir, f'{task}_curves.png')
        preds = osp.join(args.out_dir, f'{task}_predictions.png')
        plot_curves(work, task, curves)
        prediction_grid(vis, preds)
        pictures += [preds, curves]
        if not before:
            # mmdet reports nothing when no box clears the score threshold:
            # an AP of 0 by definition
            print(f'[demo] {task}: the untrained model detects nothing '
                  '(AP 0)')
        for key in [spec['metric']] + spec['extra']:
            rows.append((task, key, before.get(key, 0.0 if not before
                                               else None), after.get(key),
                         spec['target'] if key == spec['metric'] else None))

    print('\n[demo] held-out results (untrained -> trained):')
    print(f'  {"task":<5} {"metric":<18} {"untrained":>10} {"trained":>10} '
          f'{"target":>8}')
    failed = []
    for task, key, before, after, target in rows:
        mark = ''
        if target is not None and not args.quick:
            ok = after is not None and after >= target
            mark = 'met' if ok else 'MISSED'
            if not ok:
                failed.append(key)
        fmt = (lambda v: 'n/a' if v is None else f'{v:.3f}')
        print(f'  {task:<5} {key:<18} {fmt(before):>10} {fmt(after):>10} '
              f'{">= " + str(target) if target else "":>8} {mark}')
    print('\n[demo] pictures:')
    for p in pictures:
        print(f'  {osp.abspath(p)}')
    print(f'[demo] done in {time.time() - start:.0f} s')
    if failed:
        raise SystemExit(f'targets missed: {failed}')


if __name__ == '__main__':
    main()
