"""Config adjustments shared by tools/train.py and tools/test.py."""
import glob
import logging
import os
import os.path as osp
import re
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log


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
            raise SystemExit(
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


def set_launcher_env(cfg: Config, args) -> None:
    """Common command-line options of train and test."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(getattr(args, 'local_rank', 0))
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        name = os.path.splitext(os.path.basename(args.config))[0]
        cfg.work_dir = os.path.join('work_dirs', name)
    adapt_to_device(cfg, args.launcher)


def _checkpoint_number(path: str) -> int:
    match = re.search(r'(\d+)\.pth$', path)
    return int(match.group(1)) if match else -1


def latest_good_checkpoint(work_dir: str) -> Optional[str]:
    """The newest checkpoint in ``work_dir`` that loads completely.

    The file ``last_checkpoint`` names comes first, then ``epoch_*.pth`` /
    ``iter_*.pth`` from the highest number down. A file cut short (a crash
    or a full disk while saving) is reported and skipped.
    """
    candidates = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            candidates.append(f.read().strip())
    numbered = glob.glob(osp.join(work_dir, 'epoch_*.pth')) + \
        glob.glob(osp.join(work_dir, 'iter_*.pth'))
    candidates += sorted(numbered, key=_checkpoint_number, reverse=True)
    seen = set()
    for path in candidates:
        if path in seen or not osp.isfile(path):
            continue
        seen.add(path)
        try:
            # mmap reads the zip directory (at the file's end, so any
            # truncation shows) without reading the tensors a second time
            torch.load(path, map_location='cpu', mmap=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file
            print_log(f'Skipping unreadable checkpoint {path}: '
                      f'{type(e).__name__}: {str(e)[:200]}', logger='current',
                      level=logging.WARNING)
            continue
        return path
    return None
