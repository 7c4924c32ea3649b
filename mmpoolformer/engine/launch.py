"""Launching a config on the machine at hand: work dir, launcher, and the
adaptations a GPU config needs to run where there is no CUDA; the options
tools/train.py and tools/test.py share. Errors are ValueErrors, which the
tools turn into exits."""
import argparse
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def _replace_norm(node, old: str, new: str) -> int:
    """Replace norm ``type`` values in a nested config; return the count."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') == old:
            node['type'] = new
            count += 1
        for value in node.values():
            count += _replace_norm(value, old, new)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _replace_norm(value, old, new)
    return count


def adapt_to_device(cfg: Config, launcher: str) -> None:
    """Let a GPU config run on a machine without CUDA.

    Distributed runs (torchrun) then use the gloo backend with CPU DDP, and
    SyncBN, which needs CUDA, becomes per-process BN.
    """
    if torch.cuda.is_available():
        return
    if launcher != 'none':
        if launcher != 'pytorch':
            raise ValueError(
                f'Without CUDA, distributed runs need --launcher pytorch '
                f'(tools/dist_train.sh), got --launcher {launcher}')
        # mmengine's init_dist calls torch.cuda.set_device unconditionally;
        # the Runner skips it when a process group already exists.
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend='gloo')
        wrapper = cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False)
        wrapper['device_ids'] = None  # CPU modules take no device ids
        cfg.model_wrapper_cfg = wrapper
    if _replace_norm(cfg.model, 'SyncBN', 'BN'):
        print_log('No CUDA: SyncBN layers replaced by BN (statistics are '
                  'per process).', logger='current')


def prepare(cfg: Config, config_path: str, launcher: str = 'none',
            work_dir: Optional[str] = None, local_rank: int = 0) -> None:
    """Set the launcher and work dir (``work_dirs/<config name>`` unless
    given or set in the config) and adapt ``cfg`` to this machine."""
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher must be one of {LAUNCHERS}, got '
                         f'{launcher!r}')
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(config_path))[0]
        cfg.work_dir = osp.join('work_dirs', name)
    adapt_to_device(cfg, launcher)


def tool_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options tools/train.py and tools/test.py
    both take."""
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
    """The config file of :func:`tool_parser`'s ``args`` with
    ``--cfg-options`` merged, prepared to run here (:func:`prepare`)."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    prepare(cfg, args.config, args.launcher, args.work_dir, args.local_rank)
    return cfg


def _find_key(node, key: str) -> bool:
    """Whether ``key`` is a key anywhere in a nested config."""
    if isinstance(node, dict):
        return key in node or any(_find_key(v, key) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(_find_key(v, key) for v in node)
    return False


def enable_tta(cfg: Config) -> None:
    """Test with the config's test-time augmentation, as mmdet's and mmseg's
    ``tools/test.py --tta`` do: ``tta_model`` wraps the model and
    ``tta_pipeline`` replaces the test pipeline."""
    if cfg.get('default_scope') == 'mmdet' and _find_key(cfg.model,
                                                         'mask_head'):
        # mmdet's DetTTAModel merges boxes only and asserts on masks
        raise ValueError(
            '--tta: mmdet 3.3 has no test-time augmentation for instance '
            'segmentation (its DetTTAModel merges boxes, not masks); test '
            'this model without --tta')
    missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
    if missing:
        raise ValueError(
            f'--tta: the config sets no {" and no ".join(missing)}; see '
            'tta_model and tta_pipeline in configs/detection/'
            'retinanet_poolformer_s12.py or mmseg\'s _base_/datasets/'
            'ade20k.py')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def build_runner(cfg: Config):
    """The config's own runner type if it names one, else mmengine's."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    return RUNNERS.build(cfg) if 'runner_type' in cfg \
        else Runner.from_cfg(cfg)
