"""Train a detector or segmentor from an mmpoolformer (or any mm) config.

The config's ``default_scope`` (mmdet or mmseg) decides which library runs.
"""
from cli import build_runner, load_config, parser
from mmpoolformer.engine import configure_resume


def parse_args(argv=None):
    p = parser('Train a model')
    p.add_argument('--amp', action='store_true',
                   help='mixed precision (needs a GPU)')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale lr by total batch / base_batch_size')
    p.add_argument(
        '--resume', nargs='?', const='auto', metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or without a value from the newest '
        'checkpoint in work-dir that loads (damaged ones are skipped)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args)
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
    configure_resume(cfg, args.resume)
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
