"""Let torch's weights-only loader read the checkpoints mmengine writes.

torch >= 2.6 loads with ``weights_only=True``. mmengine 0.10.7 calls
``torch.load`` without the flag, so its own checkpoints (test, resume,
``load_from``, ``init_model``) fail: besides tensors they pickle numpy arrays
and scalars and the message hub's ``HistoryBuffer`` objects. Here we allow
exactly those globals and keep the safe loader on. Any other global in a
file is still refused by torch before anything in it runs.

``HistoryBuffer`` pickles its statistics methods as
``builtins.getattr(HistoryBuffer, 'mean')``. Allowing the real ``getattr``
would let a crafted file reach any attribute of any allowed object, so the
name ``builtins.getattr`` is bound to :func:`history_buffer_getattr`, which
hands out only those methods.
"""
import _codecs

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

# The methods HistoryBuffer registers for itself at construction.
_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_getattr(obj, name):
    """A ``getattr`` that only returns HistoryBuffer's statistics methods."""
    if obj is HistoryBuffer and name in _STATISTICS:
        return getattr(HistoryBuffer, name)
    raise RuntimeError(
        f'checkpoint asks for attribute {name!r} of {obj!r}; only '
        f'HistoryBuffer.{{{", ".join(_STATISTICS)}}} are allowed')


def _numpy_globals():
    """numpy's reconstruction helpers, dtypes and scalar types."""
    core = getattr(np, '_core', None) or np.core
    found = [np.ndarray, np.dtype, core.multiarray._reconstruct,
             core.multiarray.scalar]
    for name in dir(np.dtypes):
        obj = getattr(np.dtypes, name)
        if isinstance(obj, type) and issubclass(obj, np.dtype):
            found.append(obj)
    found += [t for t in set(np.sctypeDict.values())
              if isinstance(t, type) and issubclass(t, np.generic)]
    return found


def allowed_globals():
    """Everything an mmengine checkpoint may reference, and nothing else."""
    return _numpy_globals() + [
        _codecs.encode,
        HistoryBuffer,
        (history_buffer_getattr, 'builtins.getattr'),
    ]


def allow_mmengine_checkpoints():
    """Register :func:`allowed_globals` with torch's safe unpickler."""
    torch.serialization.add_safe_globals(allowed_globals())
