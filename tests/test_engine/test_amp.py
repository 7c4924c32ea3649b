"""Mixed precision on CPU (bf16): the backbone's accuracy, tools/train.py
--amp end to end, and the guard against non-finite losses."""
import glob
import json
import os.path as osp

import pytest
import torch

from helpers.devices import DEVICES, skip_coarse_bf16_bound
from mmpoolformer import PoolFormer, safeload
from mmpoolformer.engine.amp import choose_dtype
from mmpoolformer.testing import randomise
from helpers.checkout import run, tool
from helpers.configs import shapes_config

# Measured on this project's CPU (2x3x96x128, order-1 layer scales, seeds 0
# and 1): the largest relative error of a stage's output is 5.7e-3 (S12) and
# 7.8e-3 (M36), of a stage's gradients 7.9e-3 and 1.04e-2. With the
# residual stream in bf16 at stage entries they were 1.0e-2 and 1.44e-2.
OUT_TOL, GRAD_TOL = 9e-3, 1.2e-2


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize('arch', ['s12', 'm36'])
def test_backbone_bf16_within_measured_tolerance(arch, monkeypatch):
    # the fp32 reference op by op, as the bounds were measured
    # (precision.py): autocast never takes the fast path
    monkeypatch.setenv('MMPOOLFORMER_AUTO', 'plain')
    torch.manual_seed(0)
    model = randomise(PoolFormer(arch)).train()
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    runs = []
    for amp in (False, True):
        model.zero_grad(set_to_none=True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
            outs = model(x)
        assert all(o.dtype == torch.float32 for o in outs)
        gen = torch.Generator().manual_seed(1)
        sum((o * torch.randn(o.shape, generator=gen)).sum()
            for o in outs).backward()
        grads = [torch.cat([p.grad.flatten() for p in s.parameters()])
                 for s in model.stages]
        runs.append(([o.detach() for o in outs], grads))
    (ref_outs, ref_grads), (outs, grads) = runs
    for t in outs + grads:
        assert torch.isfinite(t).all()
    skip_coarse_bf16_bound('cpu')
    for i, (a, b) in enumerate(zip(outs, ref_outs)):
        assert rel(a, b) <= OUT_TOL, f'stage {i} output'
    for i, (a, b) in enumerate(zip(grads, ref_grads)):
        assert rel(a, b) <= GRAD_TOL, f'stage {i} gradients'


def train(cfg, work, *extra, check=True):
    return run(tool('train.py', cfg, '--work-dir', work, *extra),
               osp.dirname(cfg), check=check)


def losses(work):
    (scalars, ) = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    with open(scalars) as f:
        return [json.loads(line)['loss'] for line in f if '"loss"' in line]


DET = dict(train_cfg=dict(max_epochs=3, val_interval=9))
SEG = dict(train_cfg=dict(max_iters=8, val_interval=99),
           default_hooks=dict(checkpoint=dict(interval=4)))


@pytest.mark.slow
@pytest.mark.parametrize('task, backbone, changes, last', [
    pytest.param('det', None, DET, 'epoch_3.pth', id='det-poolformer'),
    pytest.param('seg', None, SEG, 'iter_8.pth', id='seg-poolformer'),
    # the families in the segmentor: on a 2-core AVX2 CPU (no native bf16)
    # seg-poolformer took 41 s, det-poolformer 119 s
    pytest.param('seg', dict(type='ConvFormer', arch='s18'), SEG,
                 'iter_8.pth', id='seg-convformer'),
    pytest.param('seg', dict(type='CAFormer', arch='s18'), SEG,
                 'iter_8.pth', id='seg-caformer'),
    pytest.param('seg', dict(type='PoolFormerV2', arch='s12'), SEG,
                 'iter_8.pth', id='seg-poolformerv2'),
])
def test_train_amp_bf16_then_resume(tiny_data, tmp_path, task, backbone,
                                    changes, last):
    """The demo's detector and segmentor (PoolFormer-S12), and with the
    family's backbones in their place (same dims: the necks fit)."""
    if backbone is not None:
        changes = dict(changes, model=dict(backbone=backbone))
    cfg = shapes_config(tmp_path / 'cfg.py', task, tiny_data, **changes)
    work = tmp_path / 'work'
    first = 'epoch_2.pth' if task == 'det' else 'iter_4.pth'
    stop = ['train_cfg.max_epochs=2'] if task == 'det' else \
        ['train_cfg.max_iters=4']
    proc = train(cfg, work, '--amp', '--cfg-options', *stop)
    assert 'Mixed precision: bf16 autocast (no CUDA' in proc.stdout
    seen = losses(work)
    assert all(map(torch.isfinite, torch.tensor(seen)))
    half = len(seen) // 2
    assert sum(seen[half:]) / (len(seen) - half) < sum(seen[:half]) / half
    ckpt = safeload.load(work / first, map_location='cpu')
    assert ckpt['state_dict'] and ckpt['meta']['iter'] > 0
    proc = train(cfg, work, '--amp', '--resume')
    assert f'Resuming from {work}/{first}' in proc.stdout + proc.stderr
    assert (work / last).exists()


@pytest.mark.slow
def test_fp16_without_cuda_is_refused(tiny_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('CUDA present: fp16 is allowed')
    cfg = shapes_config(tmp_path / 'cfg.py', 'det', tiny_data)
    proc = train(cfg, tmp_path / 'work', '--amp', '--amp-dtype', 'fp16',
                 check=False)
    assert proc.returncode != 0
    assert '--amp-dtype fp16 needs a CUDA GPU' in proc.stderr


@pytest.mark.slow
def test_non_finite_loss_stops_naming_the_iteration(tiny_data, tmp_path):
    """A zero std makes every input infinite: the loss is NaN from the first
    iteration, and the paper configs' FiniteLossHook stops the run."""
    cfg = shapes_config(tmp_path / 'cfg.py', 'det', tiny_data,
                        model=dict(data_preprocessor=dict(std=[0., 0., 0.])))
    proc = train(cfg, tmp_path / 'work', check=False)
    assert proc.returncode != 0
    assert 'NonFiniteLossError: Iteration 1 (epoch 1): the training loss is ' \
        'nan' in proc.stderr


@pytest.mark.parametrize('native, expected', [(True, 'bf16'),
                                              (False, 'fp16')])
def test_amp_picks_bf16_only_where_the_gpu_computes_it(monkeypatch, native,
                                                       expected):
    """A V100 or T4 holds bf16 tensors (torch's default check says yes)
    but has no bf16 tensor cores: it gets fp16."""
    def is_bf16_supported(including_emulation=True):
        return native or including_emulation

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', is_bf16_supported)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda: 'GPU')
    assert choose_dtype()[0] == expected


@pytest.mark.parametrize('device', DEVICES)
def test_amp_trains_a_step_in_the_dtype_it_picks(device, monkeypatch):
    """``--amp`` on this device, through the optimizer wrapper train.py
    builds: bf16 on CPUs and on GPUs from compute capability 8 (Ampere), else
    fp16; the step computes in that dtype and moves the weights."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper

    from mmpoolformer.engine.amp import enable_amp
    if device == 'cpu':  # enable_amp picks the GPU wherever there is one
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
        expected = torch.bfloat16
    else:
        major = torch.cuda.get_device_capability()[0]
        expected = torch.bfloat16 if major >= 8 else torch.float16
    cfg = Config(dict(optim_wrapper=dict(
        type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))))
    line = enable_amp(cfg)
    assert ('bf16' if expected == torch.bfloat16 else 'fp16') in line
    torch.manual_seed(0)
    model = PoolFormer(dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32)))
    model.to(device).train()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = model.stem.weight.detach().clone()
    with wrapper.optim_context(model):
        a = torch.ones(4, 4, device=device)
        assert (a @ a).dtype == expected
        outs = model(torch.randn(2, 3, 32, 32, device=device))
    wrapper.update_params(sum(o.float().mean() for o in outs))
    assert torch.isfinite(model.stem.weight).all()
    assert not torch.equal(model.stem.weight, before)
