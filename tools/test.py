"""Test a checkpoint: metrics, and on request predictions and drawings."""
import argparse
import json
import numbers
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))
import mmpoolformer  # noqa: E402,F401  (registers models, safe loading)
from mmpoolformer.runtime import set_launcher_env  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs and metrics go')
    parser.add_argument(
        '--out', help='save predictions: a .pkl file (detection) or a '
        'folder of label images (segmentation)')
    parser.add_argument('--show-dir',
                        help='save images with predictions drawn')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. a.b=1')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def _request_outputs(cfg, args):
    scope = cfg.get('default_scope')
    if args.show_dir:
        hook = cfg.default_hooks.visualization
        hook.draw = True
        if scope == 'mmdet':
            hook.test_out_dir = osp.abspath(args.show_dir)
        else:
            cfg.visualizer.save_dir = osp.abspath(args.show_dir)
            hook.interval = 1  # mmseg's default draws every 50th image
    if args.out:
        if scope == 'mmdet':
            if not args.out.endswith(('.pkl', '.pickle')):
                raise SystemExit(f'--out for detection must be a .pkl file, '
                                 f'got {args.out}')
            evaluators = cfg.test_evaluator
            if isinstance(evaluators, dict):
                evaluators = [evaluators]
            cfg.test_evaluator = list(evaluators) + [
                dict(type='DumpDetResults', out_file_path=args.out)]
        else:
            cfg.test_evaluator.output_dir = args.out
            cfg.test_evaluator.keep_results = True


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    set_launcher_env(cfg, args)
    cfg.load_from = args.checkpoint
    _request_outputs(cfg, args)

    runner = RUNNERS.build(cfg) if 'runner_type' in cfg \
        else Runner.from_cfg(cfg)
    metrics = runner.test()
    if runner.rank == 0:
        os.makedirs(cfg.work_dir, exist_ok=True)
        path = osp.join(cfg.work_dir, 'test_metrics.json')
        with open(path, 'w') as f:
            json.dump({k: float(v) if isinstance(v, numbers.Real) else str(v)
                       for k, v in metrics.items()}, f, indent=2)
        print(f'metrics written to {path}')
    return metrics


if __name__ == '__main__':
    main()
