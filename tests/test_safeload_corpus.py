"""What the ecosystem writes loads through mmpoolformer.safeload exactly as
torch's full loader gives it: files made here by the writers themselves
(mmengine's Runner with its schedulers, optimizers and EMA, the
``publish_model.py`` tools of mmdet, mmseg and mmpretrain, timm's
``CheckpointSaver``)."""
import argparse
import functools
import glob
import importlib.util
import os
import os.path as osp
import time
from unittest import mock

import numpy as np
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import DataLoader

import mmpoolformer  # noqa: F401  (mmengine's loaders read with safeload)
from mmpoolformer import safeload


def assert_same(a, b, where='checkpoint'):
    """``b`` is ``a``: same types, dict orders, tensors (dtype, stride,
    requires_grad, values), arrays and objects' attributes."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape, a.stride(), a.requires_grad) == \
            (b.dtype, b.shape, b.stride(), b.requires_grad), where
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        assert getattr(a, '_metadata', None) == \
            getattr(b, '_metadata', None), where
        for k in a:
            assert_same(a[k], b[k], f'{where}[{k!r}]')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f'{where}[{i}]')
    elif hasattr(a, '__dict__') and not callable(a):
        assert_same(vars(a), vars(b), where)
    else:
        assert a == b or (a != a and b != b), where


def loads_as_torch_does(path) -> dict:
    ref = torch.load(path, map_location='cpu', weights_only=False)
    got = safeload.load(path, map_location='cpu')
    assert_same(ref, got, osp.basename(path))
    return got


class Toy(BaseModel):
    """A conv, a BatchNorm (an int64 buffer) and a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, inputs, labels=None, mode='tensor'):
        x = self.bn(self.conv(torch.stack(inputs)))
        out = self.fc(x.mean((2, 3)))
        if mode == 'loss':
            return dict(loss=torch.nn.functional.cross_entropy(
                out, torch.stack(labels)))
        return out


def toy_data():
    g = torch.Generator().manual_seed(0)
    items = [dict(inputs=torch.randn(3, 8, 8, generator=g),
                  labels=torch.tensor(i % 2)) for i in range(8)]
    return DataLoader(items, batch_size=2, collate_fn=lambda b: dict(
        inputs=[x['inputs'] for x in b], labels=[x['labels'] for x in b]))


ITERS = 6
#: Every LR and momentum scheduler of mmengine, one after another or side
#: by side within the run's iterations.
SCHEDULES = {
    'lr': [
        dict(type='LinearLR', start_factor=0.1, begin=0, end=2),
        dict(type='MultiStepLR', milestones=[3, 4, 4], begin=0, end=5),
        dict(type='CosineAnnealingLR', T_max=3, begin=2, end=5),
        dict(type='PolyLR', power=0.9, eta_min=1e-4, begin=1, end=6),
        dict(type='ExponentialLR', gamma=0.9, begin=0, end=6),
        dict(type='StepLR', step_size=2, begin=0, end=6),
        dict(type='ConstantLR', factor=0.5, begin=0, end=2),
        dict(type='CosineRestartLR', periods=[3, 3],
             restart_weights=[1, 0.5], eta_min=1e-4, begin=0, end=6),
        dict(type='OneCycleLR', eta_max=0.1, total_steps=6, begin=0, end=6),
    ],
    'momentum': [
        dict(type='LinearMomentum', start_factor=0.5, begin=0, end=2),
        dict(type='MultiStepMomentum', milestones=[3], begin=0, end=6),
        dict(type='CosineAnnealingMomentum', T_max=3, begin=2, end=5),
        dict(type='PolyMomentum', power=1.0, begin=0, end=6),
        dict(type='ExponentialMomentum', gamma=0.99, begin=0, end=6),
        dict(type='StepMomentum', step_size=2, begin=0, end=6),
        dict(type='ConstantMomentum', factor=0.9, begin=0, end=2),
        dict(type='CosineRestartMomentum', periods=[3, 3],
             restart_weights=[1, 0.5], eta_min=0.5, begin=0, end=6),
    ],
}
OPTIMIZERS = {
    'sgd': dict(type='SGD', lr=0.01, momentum=0.9, nesterov=True,
                weight_decay=1e-4),
    'adamw': dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                  amsgrad=True, weight_decay=0.05),
}


def runner_checkpoint(work_dir, optimizer, schedule, wrapper='OptimWrapper',
                      hooks=()):
    """The checkpoint mmengine's Runner writes after :data:`ITERS` steps."""
    runner = Runner(
        model=Toy(), work_dir=str(work_dir), train_dataloader=toy_data(),
        train_cfg=dict(by_epoch=False, max_iters=ITERS),
        optim_wrapper=dict(type=wrapper, optimizer=optimizer,
                           clip_grad=dict(max_norm=1.0)),
        param_scheduler=[dict(s, by_epoch=False) for s in schedule],
        default_hooks=dict(checkpoint=dict(
            type='CheckpointHook', interval=ITERS, by_epoch=False)),
        custom_hooks=list(hooks), default_scope='mmengine',
        randomness=dict(seed=0), env_cfg=dict(dist_cfg=dict(
            backend='gloo')))
    runner.train()
    return str(work_dir / f'iter_{ITERS}.pth')


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """name -> path of every file the writers made."""
    root = tmp_path_factory.mktemp('corpus')
    files = {
        # SGD with momentum, every LR scheduler, MultiStepLR's Counter,
        # EMA's averaged model
        'runner-sgd': runner_checkpoint(
            root / 'sgd', OPTIMIZERS['sgd'], SCHEDULES['lr'],
            hooks=[dict(type='EMAHook', momentum=0.01)]),
        # AdamW with amsgrad, every momentum scheduler, bf16 autocast as
        # tools/train.py --amp runs on the CPU
        'runner-adamw-amp': runner_checkpoint(
            root / 'adamw', OPTIMIZERS['adamw'], SCHEDULES['momentum'],
            wrapper='CPUAutocastOptimWrapper'),
    }
    files.update(published(files['runner-sgd'], root))
    files['timm'] = timm_checkpoint(root / 'timm')
    return files


def tool(package, path):
    """The ``process_checkpoint`` of a package's shipped tool script."""
    import importlib
    base = osp.dirname(importlib.import_module(package).__file__)
    spec = importlib.util.spec_from_file_location(
        f'{package}_publish', osp.join(base, '.mim', 'tools', path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.process_checkpoint


def published(src, root):
    """mmdet's, mmseg's and mmpretrain's publish_model.py on ``src``."""
    out = {}
    for package, path in (
            ('mmdet', 'model_converters/publish_model.py'),
            ('mmseg', 'misc/publish_model.py'),
            ('mmpretrain', 'model_converters/publish_model.py')):
        process = tool(package, path)
        folder = root / package
        folder.mkdir()
        dst = str(folder / 'model.pth')
        # On torch >= 2.6 the tools' own torch.load is weights-only and
        # refuses the numpy objects of mmengine's checkpoints (upstream;
        # mmpoolformer leaves torch's loader as it is: docs/weights.md).
        # The file is this test's own, so it is read as a trusted file is.
        trusted = functools.partial(torch.load, weights_only=False)
        with mock.patch.object(torch, 'load', trusted):
            if package == 'mmpretrain':
                process(src, dst, argparse.Namespace(dataset_type=None,
                                                     no_ema=False))
            else:
                process(src, dst)
        # mmdet and mmseg rename the file by a `mv` they do not wait for
        deadline = time.time() + 300  # a guard against a hang, not a timing
        while not (found := glob.glob(str(folder / 'model*-*.pth'))) or \
                os.path.exists(dst):
            assert time.time() < deadline, f'{package} wrote no file'
            time.sleep(0.05)
        out[f'{package}-publish'] = found[0]
    return out


def timm_checkpoint(folder):
    """What timm's train.py saves: model, optimizer, EMA, the AMP
    scaler's state and the run's argparse Namespace."""
    timm = pytest.importorskip('timm')
    from timm.optim import create_optimizer_v2
    from timm.utils import CheckpointSaver, ModelEmaV3, NativeScaler
    model = timm.create_model('resnet10t', num_classes=3)
    opt = create_optimizer_v2(model, 'lamb', lr=1e-3)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    folder.mkdir()
    args = argparse.Namespace(model='resnet10t', lr=1e-3, epochs=1,
                              amp=True, input_size=None, mean=(0.5, ) * 3)
    saver = CheckpointSaver(model, opt, args=args,
                            model_ema=ModelEmaV3(model),
                            amp_scaler=NativeScaler(),
                            checkpoint_dir=str(folder),
                            recovery_dir=str(folder))
    saver.save_checkpoint(epoch=0, metric=0.5)
    return str(folder / 'last.pth.tar')


WRITERS = ['runner-sgd', 'runner-adamw-amp', 'mmdet-publish',
           'mmseg-publish', 'mmpretrain-publish', 'timm']


@pytest.mark.parametrize('name', WRITERS)
def test_corpus_loads_as_torch_does(corpus, name):
    loads_as_torch_does(corpus[name])


def test_corpus_holds_what_it_should(corpus):
    """The files hold what the writers are known for, so the comparisons
    above compare something."""
    with open(corpus['mmdet-publish'], 'rb') as f:
        assert f.read(2) == b'\x80\x02'  # legacy format, not a zip
    sgd = safeload.load(corpus['runner-sgd'])
    milestones = sgd['param_schedulers'][1]['milestones']
    assert type(milestones).__name__ == 'Counter'
    assert milestones == {3: 1, 4: 2}
    assert 'ema_state_dict' in sgd  # EMAHook's averaged model
    assert sgd['state_dict']['bn.num_batches_tracked'].dtype == torch.int64
    adamw = safeload.load(corpus['runner-adamw-amp'])
    state = adamw['optimizer']['state']
    assert 'max_exp_avg_sq' in next(iter(state.values()))  # amsgrad
    timm_file = safeload.load(corpus['timm'])
    assert isinstance(timm_file['args'], argparse.Namespace)
    assert {'optimizer', 'state_dict_ema', 'amp_scaler'} <= set(timm_file)


def test_mmdet_publish_through_mmengine(corpus):
    """A legacy-format file from mmdet's own tool through mmengine's
    CheckpointLoader, as load_from and init_detector read it, after
    ``import mmpoolformer``."""
    from mmengine.runner import CheckpointLoader
    path = corpus['mmdet-publish']
    got = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert_same(torch.load(path, map_location='cpu', weights_only=False),
                got)
    model = Toy()
    from mmengine.runner import load_checkpoint
    load_checkpoint(model, path, map_location='cpu', strict=True)
    assert torch.equal(model.fc.weight, got['state_dict']['fc.weight'])
