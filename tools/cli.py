"""What tools/train.py and tools/test.py share: their common options, and a
config loaded, overridden and prepared for this machine."""
import argparse

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmpoolformer  # noqa: F401  (registers models and hooks)
from mmpoolformer.engine import LAUNCHERS, prepare


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options both tools take."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument('config', help='config file')
    p.add_argument('--work-dir', help='where logs, metrics and checkpoints '
                   'go (default: work_dirs/<config name>)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config keys, e.g. a.b=1')
    p.add_argument('--launcher', default='none', choices=LAUNCHERS)
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return p


def load_config(args: argparse.Namespace) -> Config:
    """The config file with ``--cfg-options`` merged, prepared to run here."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    prepare(cfg, args.config, args.launcher, args.work_dir, args.local_rank)
    return cfg


def build_runner(cfg: Config) -> Runner:
    """The config's own runner type if it names one, else mmengine's."""
    return RUNNERS.build(cfg) if 'runner_type' in cfg \
        else Runner.from_cfg(cfg)

