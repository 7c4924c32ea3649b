"""Train a detector or segmentor from an mmpoolformer (or any mm) config.

The config's ``default_scope`` (mmdet or mmseg) decides which library runs.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))
import mmpoolformer  # noqa: E402,F401  (registers models, safe loading)
from mmpoolformer.runtime import (latest_good_checkpoint,  # noqa: E402
                                  set_launcher_env)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (needs a GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale lr by total batch / base_batch_size')
    parser.add_argument(
        '--resume', nargs='?', const='auto', metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or without a value from the newest '
        'checkpoint in work-dir that loads (damaged ones are skipped)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. a.b=1')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    set_launcher_env(cfg, args)

    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA GPU; none is available')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit('--auto-scale-lr: the config has no '
                             'auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        # mmengine's own auto-resume trusts last_checkpoint blindly; a file
        # cut short by a crash would stop the run.
        path = latest_good_checkpoint(cfg.work_dir)
        print_log(f'Resuming from {path}' if path else
                  f'No checkpoint in {cfg.work_dir}: starting afresh',
                  logger='current')
        cfg.resume, cfg.load_from = path is not None, path
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'RNGStateHook' for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='RNGStateHook')]

    runner = RUNNERS.build(cfg) if 'runner_type' in cfg \
        else Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
