"""The distribution, as a user with an OpenMMLab environment gets it: the
sdist and the wheel carry configs, tools and the model index under
``mmpoolformer/.mim``; the wheel installs into an environment that has the
stack without installing anything else; and from a folder outside the
repository ``mmpoolformer::`` configs resolve and build, and ``mim train /
test / run / search mmpoolformer`` work. About 1.5 minutes of CPU time; 10
minutes of wall time on 2 cores shared with other jobs."""
import glob
import json
import os.path as osp
import sys
import tarfile
import zipfile

import pytest
import torch

from build_env import (REPO, copy_checkout, installed, json_line, run,
                       stack_venv)
from mmpoolformer import __version__
from mmpoolformer.datasets import make_dataset
from mmpoolformer.testing import mmpretrain_poolformer, official_state

pytestmark = pytest.mark.slow
MIM = 'mmpoolformer/.mim/'
NAME = f'mmpoolformer-{__version__}'


def repo_files(folder, pattern='**/*'):
    """Files of the checkout's ``folder``, relative to it."""
    root = osp.join(REPO, folder)
    return {osp.relpath(p, root)
            for p in glob.glob(osp.join(root, pattern), recursive=True)
            if osp.isfile(p) and '__pycache__' not in p}


@pytest.fixture(scope='module')
def dists(tmp_path_factory):
    """(sdist, wheel built from the checkout, wheel built from the
    sdist)."""
    tmp = tmp_path_factory.mktemp('dists')
    src = copy_checkout(tmp / 'src')
    run([sys.executable, 'setup.py', '-q', 'sdist', '-d', tmp / 'sdist'],
        src)
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '-w', tmp / 'wheel', src], tmp)
    sdist, = glob.glob(str(tmp / 'sdist' / '*.tar.gz'))
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '-w', tmp / 'from_sdist', sdist], tmp)
    wheel, = glob.glob(str(tmp / 'wheel' / '*.whl'))
    from_sdist, = glob.glob(str(tmp / 'from_sdist' / '*.whl'))
    return sdist, wheel, from_sdist


def test_wheel_carries_configs_tools_and_index(dists):
    _, wheel, _ = dists
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {n[len(MIM + 'configs/'):] for n in names
               if n.startswith(MIM + 'configs/')}
    assert configs == repo_files('configs')
    assert 'detection/metafile.yml' in configs
    tools = {n[len(MIM + 'tools/'):] for n in names
             if n.startswith(MIM + 'tools/')}
    # the checkout's own set-up and index writer stay behind
    assert tools == repo_files('tools') - {'setup_env.sh', 'model_index.py'}
    assert MIM + 'model-index.yml' in names
    assert 'mmpoolformer/models/metaformer.py' in names
    assert not any('tests/' in n or '__pycache__' in n for n in names)
    # the benchmark harness and the offline bundle script are the
    # checkout's: tools/benchmark.py alone, which says so outside one
    assert not [n for n in names if 'gpu_bundle' in n or n.startswith(
        'benchmarks/') or n.endswith('testing/benchmark.py')]
    assert MIM + 'tools/benchmark.py' in names


def test_sdist_carries_them_and_builds_the_same_wheel(dists):
    sdist, wheel, from_sdist = dists
    with tarfile.open(sdist) as tar:
        names = {n[len(NAME) + 1:] for n in tar.getnames()}
    assert {MIM + 'configs/' + c for c in repo_files('configs')} <= names
    assert MIM + 'tools/train.py' in names
    assert MIM + 'model-index.yml' in names
    assert set(zipfile.ZipFile(wheel).namelist()) == \
        set(zipfile.ZipFile(from_sdist).namelist())


def test_metadata_names_the_family_and_the_stack(dists):
    _, wheel, _ = dists
    meta = zipfile.ZipFile(wheel).read(
        f'{NAME}.dist-info/METADATA').decode()
    summary = next(line for line in meta.splitlines()
                   if line.startswith('Summary:'))
    for name in ('PoolFormer', 'PoolFormerV2', 'ConvFormer', 'CAFormer',
                 'IdentityFormer', 'RandFormer'):
        assert name in summary
    assert 'Requires-Python: >=3.8' in meta
    for req in ('torch>=2.0', 'mmengine<1.0,>=0.10.0',
                'mmcv<2.2.0,>=2.0.0', 'safetensors; extra == "safetensors"',
                "mmdet<3.4.0,>=3.0.0; extra == \"det\"",
                "mmsegmentation<1.3.0,>=1.0.0; extra == \"seg\""):
        assert f'Requires-Dist: {req}' in meta, req


@pytest.fixture(scope='module')
def env(dists, tmp_path_factory):
    """A fresh venv over this environment's stack with the wheel installed;
    returns its python."""
    _, wheel, _ = dists
    tmp = tmp_path_factory.mktemp('env')
    py = stack_venv(tmp / 'venv')
    # with the index: pip would install or upgrade nothing but us (over
    # the floor's stack, its torch 2.0.1 and numpy 1.26 stay)
    run([py, '-m', 'pip', 'install', '--dry-run', '--quiet', '--report',
         tmp / 'report.json', wheel], tmp)
    report = json.loads((tmp / 'report.json').read_text())
    assert [i['metadata']['name'] for i in report['install']] == \
        ['mmpoolformer']
    # --no-index: a requirement the stack does not meet fails here
    def others():
        """pip freeze's lines of everything but mmpoolformer (the stack's
        own editable install of the checkout included)."""
        lines = run([py, '-m', 'pip', 'freeze'], tmp).splitlines()
        return {line for line in lines if 'mmpoolformer' not in line
                and not line.startswith(('-e ', '# Editable'))}

    before = others()
    out = run([py, '-m', 'pip', 'install', '--no-index', wheel], tmp)
    assert installed(out) == [NAME], out
    assert others() == before
    # the extras are met by the stack as well: nothing more to install
    out = run([py, '-m', 'pip', 'install', '--no-index',
               f'{wheel}[det,seg,cls]'], tmp)
    assert installed(out) == [], out
    return py


@pytest.fixture(scope='module')
def outside(tmp_path_factory):
    path = tmp_path_factory.mktemp('outside')
    assert not str(path).startswith(REPO)
    return path


# Each inherits one of our configs and reuses one of its variables
# (``test_pipeline``; the segmentation config's own would be tagged by
# mmengine's own ``pkg::`` handling with an ``mmpoolformer`` registry scope,
# which has no transforms).
USER = """_base_ = 'mmpoolformer::{base}'
model = dict(backbone=dict(drop_path_rate=0.1))
val_dataloader = dict(dataset=dict(pipeline={{{{_base_.test_pipeline}}}}))
"""
BASES = {'detection/retinanet_poolformer_s12.py': ('RetinaNet', 1e-4),
         'detection/mask_rcnn_caformer_s18.py': ('MaskRCNN', 2e-4),
         'segmentation/fpn_poolformer_s12.py': ('EncoderDecoder', 2e-4)}
BUILD = """
import json, sys
import mmpoolformer  # lets mmengine resolve mmpoolformer::
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import MODELS, init_default_scope
got = dict(package=mmpoolformer.__file__)
for name in sys.argv[1:]:
    cfg = Config.fromfile(name)
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = None  # no download
    model = MODELS.build(cfg.model)
    pipeline = Compose(cfg.val_dataloader.dataset.pipeline)
    got[name] = dict(
        params=sum(p.numel() for p in model.parameters()),
        backbone=type(model.backbone).__name__, model=type(model).__name__,
        imports=cfg.custom_imports.imports,
        lr=cfg.optim_wrapper.optimizer.lr,
        pipeline=[type(t).__name__ for t in pipeline.transforms])
print(json.dumps(got))
"""


def test_user_configs_inherit_ours(env, outside):
    """From outside the repository, with the installed package."""
    names = []
    for i, base in enumerate(BASES):
        names.append(f'user_{i}.py')
        (outside / names[-1]).write_text(USER.format(base=base))
    got = json_line(run([env, '-c', BUILD, *names], outside))
    assert got['package'].startswith(osp.dirname(osp.dirname(env)))
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    for name, (base, (model, lr)) in zip(names, BASES.items()):
        built = got[name]
        assert built['model'] == model
        assert built['imports'] == ['mmpoolformer']  # carried from ours
        assert built['lr'] == lr
        assert built['pipeline'][0] == 'LoadImageFromFile'
        assert built['pipeline'][-1] in ('PackDetInputs', 'PackSegInputs')
        # the same model as the checkout's config builds
        cfg = Config.fromfile(osp.join(REPO, 'configs', base))
        init_default_scope(cfg.default_scope)
        cfg.model.backbone.init_cfg = None
        ours = MODELS.build(cfg.model)
        assert built['params'] == sum(p.numel() for p in ours.parameters())
        assert built['backbone'] == cfg.model.backbone.type


# The demo segmentor, 4 iterations; its data_root (data/shapes/...) is
# relative to the working directory, where the fixture writes the data.
TINY = """_base_ = 'mmpoolformer::demo/fpn_poolformer_s12_shapes.py'
train_dataloader = dict(batch_size=2)
train_cfg = dict(max_iters=4, val_interval=4)
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=4,
         by_epoch=False)
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=4))
"""


@pytest.fixture(scope='module')
def mim_trained(env, outside):
    """``mim train mmpoolformer`` on a user config inheriting the demo
    segmentor: 4 iterations on 8 tiny images."""
    make_dataset(str(outside / 'data' / 'shapes'), num_train=8, num_val=4,
                 size=96, seed=0)
    (outside / 'tiny_seg.py').write_text(TINY)
    out = run([env, '-m', 'mim', 'train', 'mmpoolformer', 'tiny_seg.py',
               '--work-dir', 'work'], outside)
    return out, outside / 'work'


def test_mim_train(mim_trained, env, outside):
    out, work = mim_trained
    # mim ran the installed package's copy of tools/train.py
    site = osp.join(osp.dirname(osp.dirname(env)), 'lib',
                    'python%d.%d' % sys.version_info[:2], 'site-packages')
    script = osp.join(site, MIM + 'tools', 'train.py')
    assert f'Training command is {env} {script} tiny_seg.py' in out, out
    assert (work / 'iter_4.pth').exists()
    assert 'Iter(train) [4/4]' in out
    assert 'mIoU' in out


def test_mim_test_finds_our_config_by_name(mim_trained, env, outside):
    _, work = mim_trained
    out = run([env, '-m', 'mim', 'test', 'mmpoolformer',
               'fpn_poolformer_s12_shapes.py', '--checkpoint',
               work / 'iter_4.pth', '--work-dir', 'work_test'], outside)
    assert f'{MIM}configs/demo/fpn_poolformer_s12_shapes.py' in out
    assert 'Iter(test) [4/4]' in out and 'mIoU' in out


def test_mim_run_get_flops_and_export_onnx(mim_trained, env, outside):
    _, work = mim_trained
    out = run([env, '-m', 'mim', 'run', 'mmpoolformer', 'get_flops',
               'tiny_seg.py', '--shape', '64', '64'], outside)
    assert 'input 1x3x64x64' in out and 'FLOPs' in out
    out = run([env, '-m', 'mim', 'run', 'mmpoolformer', 'export_onnx',
               'tiny_seg.py', work / 'iter_4.pth', 'seg.onnx', '--shape',
               '64', '64'], outside)
    assert (outside / 'seg.onnx').exists()
    assert 'wrote seg.onnx; onnxruntime vs PyTorch' in out


def test_mim_run_convert_weights(env, outside):
    src, dst = outside / 'official.pth', outside / 'converted.pth'
    torch.save(official_state(mmpretrain_poolformer('s12')), src)
    out = run([env, '-m', 'mim', 'run', 'mmpoolformer', 'convert_weights',
               src, dst], outside)
    assert 'official layout' in out
    state = torch.load(dst)
    assert 'stem.weight' in state and 'head.weight' not in state


def test_mim_search(env, outside):
    out = run([env, '-m', 'mim', 'search', 'mmpoolformer'], outside)
    for name in ('retinanet_poolformer_s12', 'mask_rcnn_caformer_s36',
                 'fpn_poolformer_m48'):
        assert name in out
