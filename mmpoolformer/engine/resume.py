"""Exact resumption: which checkpoint to resume from, and the random states
that travel with it."""
import glob
import logging
import os.path as osp
import random
import re
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..safeload import check


def _checkpoint_number(path: str) -> int:
    match = re.search(r'(\d+)\.pth$', path)
    return int(match.group(1)) if match else -1


def latest_good_checkpoint(work_dir: str) -> Optional[str]:
    """The newest checkpoint in ``work_dir`` that loads completely.

    The file ``last_checkpoint`` names comes first, then ``epoch_*.pth`` /
    ``iter_*.pth`` from the highest number down. A file cut short (a crash
    or a full disk while saving) is reported and skipped. mmengine's own
    auto-resume trusts ``last_checkpoint`` blindly, so such a file would stop
    the run.
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
            check(path)
        except Exception as e:  # noqa: BLE001 - any unreadable file
            print_log(f'Skipping unreadable checkpoint {path}: '
                      f'{type(e).__name__}: {str(e)[:200]}', logger='current',
                      level=logging.WARNING)
            continue
        return path
    return None


def _get_states():
    states = dict(python=random.getstate(), numpy=np.random.get_state(),
                  torch=torch.get_rng_state())
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def _same(a, b) -> bool:
    return a['python'] == b['python'] and \
        torch.equal(a['torch'], b['torch']) and \
        all(np.array_equal(x, y) for x, y in zip(a['numpy'], b['numpy']))


def _set_states(states):
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Store every process's Python, NumPy and torch random states in each
    checkpoint and give each its own back on resume; validation leaves them
    untouched.

    mmengine restores weights, optimizer, schedulers and counters on resume,
    but not random states, so a resumed run drifts from one that was never
    interrupted. With this hook and ``randomness=dict(seed=...,
    deterministic=True)`` the two end bit-identical, in one process or
    several (also with ``diff_rank_seed=True``, where each rank draws its
    own numbers).
    """

    # after the other hooks of an iteration, before CheckpointHook's save
    priority = 'LOW'

    def __init__(self):
        self._gathered = None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        # Checkpoints are saved by rank 0 alone, so every rank's states are
        # gathered here, the last point all ranks pass before a save (a few
        # kB per iteration).
        if get_world_size() > 1:
            local = _get_states()
            self._gathered = (local, all_gather_object(local))

    def before_save_checkpoint(self, runner, checkpoint):
        local = _get_states()
        states = [local]
        if self._gathered is not None:
            if _same(self._gathered[0], local):
                states = self._gathered[1]
            else:
                print_log('RNGStateHook: random numbers were drawn between '
                          'the last iteration and this checkpoint; it holds '
                          'rank 0\'s random states only.', logger='current',
                          level=logging.WARNING)
        checkpoint['rng_states'] = states

    def after_load_checkpoint(self, runner, checkpoint):
        states = checkpoint.get('rng_states')
        if states is None:
            return
        if isinstance(states, dict):  # one process's (mmpoolformer 0.1)
            states = [states]
        rank, world = get_rank(), get_world_size()
        if len(states) != world:
            print_log(f'The checkpoint holds the random states of '
                      f'{len(states)} processes, this run has {world}: '
                      f'rank {rank} takes those of rank '
                      f'{rank % len(states)}, and the run will not repeat '
                      f'the interrupted one exactly.', logger='current',
                      level=logging.WARNING)
        _set_states(states[rank % len(states)])

    # A validation pass draws random numbers (a DataLoader draws its base
    # seed); a resumed run does not repeat it, so it must not count.
    def before_val(self, runner):
        self._saved = _get_states()

    def after_val(self, runner):
        _set_states(self._saved)


def configure_resume(cfg, resume: Optional[str]) -> None:
    """Set ``cfg.resume``/``cfg.load_from`` for ``resume``: None (start
    afresh), ``'auto'`` (the newest checkpoint in the work dir that loads)
    or a path; and add :class:`RNGStateHook` unless the config has it."""
    if resume == 'auto':
        path = latest_good_checkpoint(cfg.work_dir)
        print_log(f'Resuming from {path}' if path else
                  f'No checkpoint in {cfg.work_dir}: starting afresh',
                  logger='current')
        cfg.resume, cfg.load_from = path is not None, path
    elif resume is not None:
        cfg.resume, cfg.load_from = True, resume
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'RNGStateHook' for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='RNGStateHook')]
