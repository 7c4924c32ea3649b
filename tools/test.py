"""Test a checkpoint: metrics, and on request predictions and drawings."""
import json
import numbers
import os
import os.path as osp

from mmpoolformer.engine.launch import (build_runner, enable_tta,
                                        load_config, tool_parser)


def parse_args(argv=None):
    p = tool_parser('Test a checkpoint')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument(
        '--out', help='save predictions: a .pkl file (detection) or a '
        'folder of label images (segmentation)')
    p.add_argument('--show-dir', help='save images with predictions drawn')
    p.add_argument('--tta', action='store_true',
                   help="test-time augmentation: the config's tta_model and "
                   'tta_pipeline')
    return p.parse_args(argv)


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
    try:
        cfg = load_config(args)
        if args.tta:
            enable_tta(cfg)
    except ValueError as e:  # e.g. a launcher this machine cannot run
        raise SystemExit(str(e))
    cfg.load_from = args.checkpoint
    _request_outputs(cfg, args)

    runner = build_runner(cfg)
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
