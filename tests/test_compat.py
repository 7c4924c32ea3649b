"""mmengine's checkpoints load through mmengine's loaders, which read with
mmpoolformer.safeload; nothing else that is pickled does, and torch's own
loader is left as it is."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

import mmpoolformer  # noqa: F401  (registers the allowlist)
from mmpoolformer import PoolFormer
from mmpoolformer.weights import (CheckpointFormatError, convert,
                                  load_pretrained)


def mmengine_like_checkpoint():
    hub = MessageHub.get_instance('test_safe_load')
    for v in (1.0, 2.0, 4.0):
        hub.update_scalar('train/loss', v)
    hub.update_info('iter', 3)
    return {
        'meta': {'epoch': 1, 'iter': 3, 'seed': np.int64(7),
                 'dataset_meta': {'classes': ('a', 'b'),
                                  'palette': [(1, 2, 3), (4, 5, 6)]}},
        'state_dict': PoolFormer('s12', out_indices=(0, )).state_dict(),
        'message_hub': hub.state_dict(),
        'extra': {'array': np.arange(6, dtype=np.float32).reshape(2, 3),
                  'scalar': np.float64(0.5), 'dtype': np.dtype('int16')},
    }


def test_mmengine_checkpoint_loads_weights_only(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    torch.save(mmengine_like_checkpoint(), path)
    ckpt = _load_checkpoint(str(path), map_location='cpu')  # mmengine's path
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.mean() == pytest.approx(7 / 3)
    assert buf.statistics('max') == 4.0
    assert ckpt['extra']['array'].sum() == 15
    assert ckpt['meta']['dataset_meta']['classes'] == ('a', 'b')


class Payload:
    """Pickles as a call of os.system that would create ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


class SneakyGetattr:
    """Pickles as builtins.getattr on an allowed class."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def test_payload_refused_and_not_run(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    state = PoolFormer('s12').state_dict()
    torch.save({'state_dict': state, 'x': Payload(marker)}, path)
    with pytest.raises(Exception, match='system'):
        _load_checkpoint(str(path), map_location='cpu')
    with pytest.raises(CheckpointFormatError, match='evil.pth'):
        load_pretrained(PoolFormer('s12'), str(path), convert)
    assert not marker.exists()


@pytest.mark.skipif(torch.__version__ < '2.6', reason="torch's loader is "
                    'weights-only by default from 2.6')
def test_torch_loader_not_widened(tmp_path):
    """Importing the package allows torch's own unpickler nothing: it would
    call numpy's dtype.__setstate__ unchecked (compat.py, item 1)."""
    path = tmp_path / 'epoch_1.pth'
    torch.save(mmengine_like_checkpoint(), path)
    with pytest.raises(pickle.UnpicklingError, match='numpy'):
        torch.load(path)
    path = tmp_path / 'sneaky.pth'
    torch.save({'x': SneakyGetattr()}, path)
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        torch.load(path)
