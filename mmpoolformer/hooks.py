"""Exact resumption: random states travel with the checkpoint."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def _get_states():
    states = dict(python=random.getstate(), numpy=np.random.get_state(),
                  torch=torch.get_rng_state())
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def _set_states(states):
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Store Python, NumPy and torch random states in every checkpoint and
    restore them on resume; validation leaves them untouched.

    mmengine restores weights, optimizer, schedulers and counters on resume,
    but not random states, so a resumed run drifts from one that was never
    interrupted. With this hook and ``randomness=dict(seed=...,
    deterministic=True)`` the two end bit-identical.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint['rng_states'] = _get_states()

    def after_load_checkpoint(self, runner, checkpoint):
        if 'rng_states' in checkpoint:
            _set_states(checkpoint['rng_states'])

    # A validation pass draws random numbers (a DataLoader draws its base
    # seed); a resumed run does not repeat it, so it must not count.
    def before_val(self, runner):
        self._saved = _get_states()

    def after_val(self, runner):
        _set_states(self._saved)
