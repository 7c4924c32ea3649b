"""Killed runs resume to bit-identical weights; damaged checkpoints are
skipped."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, shapes_config
from mmpoolformer.engine import latest_good_checkpoint

TRAIN = os.path.join(REPO, 'tools', 'train.py')
EPOCHS = 3


def config(path, data):
    # drop path and random flips make the run depend on every RNG
    return shapes_config(
        path, 'det', data, model=dict(backbone=dict(drop_path_rate=0.2)),
        train_cfg=dict(max_epochs=EPOCHS, val_interval=1),
        randomness=dict(seed=3, deterministic=True),
        default_hooks=dict(checkpoint=dict(interval=1)))


def train_cmd(cfg, work, *extra):
    return [sys.executable, TRAIN, cfg, '--work-dir', str(work), *extra]


def weights(path):
    return torch.load(path, map_location='cpu')['state_dict']


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert differ == [], f'{len(differ)} tensors differ, e.g. {differ[:3]}'


@pytest.fixture(scope='module')
def reference(tiny_data, tmp_path_factory):
    """A run that was never interrupted."""
    tmp = tmp_path_factory.mktemp('ref')
    cfg = config(tmp / 'cfg.py', tiny_data)
    subprocess.run(train_cmd(cfg, tmp / 'work'), check=True,
                   capture_output=True, cwd=tmp)
    return cfg, tmp / 'work'


def test_sigkill_then_resume_matches_uninterrupted(reference, tmp_path):
    cfg, ref = reference
    work = tmp_path / 'work'
    proc = subprocess.Popen(train_cmd(cfg, work), cwd=tmp_path,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    # mmengine writes last_checkpoint once epoch_1.pth is complete
    while not (work / 'last_checkpoint').exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / f'epoch_{EPOCHS}.pth').exists(), 'killed too late'
    out = subprocess.run(train_cmd(cfg, work, '--resume'), cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'Resuming from' in out.stdout + out.stderr
    assert_same_weights(work / f'epoch_{EPOCHS}.pth',
                        ref / f'epoch_{EPOCHS}.pth')


def test_truncated_latest_checkpoint_is_skipped(reference, tmp_path, capsys):
    cfg, ref = reference
    work = tmp_path / 'work'
    work.mkdir()
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        shutil.copy(ref / name, work / name)
    data = (work / 'epoch_2.pth').read_bytes()
    (work / 'epoch_2.pth').write_bytes(data[:len(data) // 3])
    (work / 'last_checkpoint').write_text(str(work / 'epoch_2.pth'))

    assert latest_good_checkpoint(str(work)) == str(work / 'epoch_1.pth')
    out = subprocess.run(train_cmd(cfg, work, '--resume'), cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert f'Skipping unreadable checkpoint {work}/epoch_2.pth' in log
    assert f'Resuming from {work}/epoch_1.pth' in log
    assert_same_weights(work / f'epoch_{EPOCHS}.pth',
                        ref / f'epoch_{EPOCHS}.pth')


def test_no_checkpoint_starts_afresh(tmp_path):
    assert latest_good_checkpoint(str(tmp_path)) is None
