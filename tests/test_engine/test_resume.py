"""Killed runs resume to bit-identical weights; damaged checkpoints are
skipped."""
import os
import shutil
import signal
import subprocess
import time

import pytest
import torch

from mmpoolformer import safeload
from mmpoolformer.engine import latest_good_checkpoint
from helpers.checkout import checkout_env, run, tool
from helpers.configs import shapes_config

EPOCHS = 3


@pytest.fixture(scope='module', autouse=True)
def one_path():
    """'auto' measures the two block paths in each process, so a resumed
    run could pick the other one and differ at fp32 rounding: bitwise
    resumption holds for a pinned path (docs/tools.md)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('MMPOOLFORMER_AUTO', 'plain')
        yield


def config(path, data, **randomness):
    # drop path and random flips make the run depend on every RNG
    return shapes_config(
        path, 'det', data, model=dict(backbone=dict(drop_path_rate=0.2)),
        train_cfg=dict(max_epochs=EPOCHS, val_interval=1),
        randomness=dict(seed=3, deterministic=True, **randomness),
        default_hooks=dict(checkpoint=dict(interval=1)))


def train_cmd(cfg, work, *extra):
    return tool('train.py', cfg, '--work-dir', work, *extra)


def weights(path):
    return safeload.load(path, map_location='cpu')['state_dict']


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
    run(train_cmd(cfg, tmp / 'work'), tmp)
    return cfg, tmp / 'work'


def kill_after_first_checkpoint(cmd, work, cwd, env=None):
    """Run ``cmd`` and SIGKILL it, with all its processes, as soon as its
    first checkpoint is complete."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=checkout_env(**(env or {})),
                            start_new_session=True,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    # mmengine writes last_checkpoint once epoch_1.pth is complete
    while not (work / 'last_checkpoint').exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (work / 'last_checkpoint').exists(), 'the run failed'
    assert not (work / f'epoch_{EPOCHS}.pth').exists(), 'killed too late'


def resume(cmd, cwd, env=None):
    out = run(cmd + ['--resume'], cwd, env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'Resuming from' in out.stdout + out.stderr


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(reference, tmp_path):
    cfg, ref = reference
    work = tmp_path / 'work'
    kill_after_first_checkpoint(train_cmd(cfg, work), work, tmp_path)
    resume(train_cmd(cfg, work), tmp_path)
    assert_same_weights(work / f'epoch_{EPOCHS}.pth',
                        ref / f'epoch_{EPOCHS}.pth')


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU data-parallel')
def test_two_processes_sigkill_then_resume(tiny_data, tmp_path):
    """``dist_train.sh CONFIG 2`` with drop path and ``diff_rank_seed``:
    each rank draws its own random numbers, and each gets its own back."""
    cfg = config(tmp_path / 'cfg.py', tiny_data, diff_rank_seed=True)

    def dist(work, port):
        return tool('dist_train.sh', cfg, '2', '--work-dir', work), dict(
            PORT=str(port))

    ref = tmp_path / 'ref'
    cmd, env = dist(ref, 29651)
    run(cmd, tmp_path, env)
    work = tmp_path / 'work'
    cmd, env = dist(work, 29652)
    kill_after_first_checkpoint(cmd, work, tmp_path, env)
    cmd, env = dist(work, 29653)
    resume(cmd, tmp_path, env)
    assert_same_weights(work / f'epoch_{EPOCHS}.pth',
                        ref / f'epoch_{EPOCHS}.pth')


@pytest.mark.slow
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
    out = run(train_cmd(cfg, work, '--resume'), tmp_path, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert f'Skipping unreadable checkpoint {work}/epoch_2.pth' in log
    assert f'Resuming from {work}/epoch_1.pth' in log
    assert_same_weights(work / f'epoch_{EPOCHS}.pth',
                        ref / f'epoch_{EPOCHS}.pth')


def test_no_checkpoint_starts_afresh(tmp_path):
    assert latest_good_checkpoint(str(tmp_path)) is None
