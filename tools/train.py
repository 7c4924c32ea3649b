"""Train a detector or segmentor from an mmpoolformer (or any mm) config.

The config's ``default_scope`` (mmdet or mmseg) decides which library runs.
"""
from mmpoolformer.engine import configure_resume, enable_amp
from mmpoolformer.engine.launch import build_runner, load_config, tool_parser


def parse_args(argv=None):
    p = tool_parser('Train a model')
    p.add_argument('--amp', action='store_true',
                   help='mixed precision: bf16 where the device supports it '
                   '(CPUs, A100, H100), else fp16 with dynamic loss scaling')
    p.add_argument('--amp-dtype', choices=['bf16', 'fp16'],
                   help='with --amp: this dtype (fp16 needs CUDA)')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale lr by total batch / base_batch_size')
    p.add_argument(
        '--resume', nargs='?', const='auto', metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or without a value from the newest '
        'checkpoint in work-dir that loads (damaged ones are skipped)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.amp_dtype and not args.amp:
        raise SystemExit('--amp-dtype needs --amp')
    try:
        cfg = load_config(args)
        amp = enable_amp(cfg, args.amp_dtype) if args.amp else None
    except (ValueError, RuntimeError) as e:  # what this machine cannot run
        raise SystemExit(str(e))
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit('--auto-scale-lr: the config has no '
                             'auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True
    configure_resume(cfg, args.resume)
    runner = build_runner(cfg)
    if amp:
        runner.logger.info(amp)
    runner.train()


if __name__ == '__main__':
    main()
