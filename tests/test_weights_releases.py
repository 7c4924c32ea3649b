"""The authors' released COCO and ADE20K models (mmdet 2.19 / mmseg 0.19
files: mmcv 1.x's meta, state_dict, optimizer and apex's amp; the backbone
in the authors' names) load as they are through every path a user takes,
giving the authors' network; and a checkpoint that does not fill the
backbone is an error naming what did not land."""
import os.path as osp
import re
import runpy
import sys

import pytest
import torch
from mmengine.runner import load_checkpoint

from helpers.checkout import REPO, TOOLS
from helpers.releases import RELEASES, authors_release, build, outputs
from mmpoolformer import PoolFormer, safeload
from mmpoolformer.models.base import DenseBackbone
from mmpoolformer.testing import (assert_close, mmpretrain_poolformer,
                                  official_state)
from mmpoolformer.weights import CheckpointFormatError

X = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope='module', autouse=True)
def op_by_op():
    """Our blocks op by op, as the authors' network computes them: where
    'auto' picked the fast path, features would differ by fp32 rounding
    (1e-6 of their scale), which Mask R-CNN's randomised RoI heads amplify
    past any bound. The loading, not the fast path, is under test here."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('MMPOOLFORMER_AUTO', 'plain')
        yield


@pytest.fixture(scope='module', params=list(RELEASES))
def release(request, tmp_path_factory):
    """(kind, our config, the release file, its content, the outputs of the
    authors' network with the release's neck and heads)."""
    kind = request.param
    content, _, expected = authors_release(kind)
    path = tmp_path_factory.mktemp(kind) / f'{kind}_poolformer_s12.pth'
    torch.save(content, path)
    return (kind, osp.join(REPO, RELEASES[kind][0]), str(path), content,
            outputs(expected, X))


def assert_outputs(model, expected):
    """Backbone, neck and head outputs all equal the expected ones."""
    got = outputs(model.eval(), X)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert_close(got[name], value, name)


def runner(config, tmp_path, **changes):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(work_dir=str(tmp_path / 'work'), **changes))
    return Runner.from_cfg(cfg)


def via_load_checkpoint(config, path, tmp_path):
    model = build(osp.relpath(config, REPO))
    load_checkpoint(model, path, map_location='cpu')
    return model


def via_test_tool(config, path, tmp_path):
    """What ``tools/test.py CONFIG CKPT`` (and mmdet's / mmseg's own
    ``tools/test.py``) do before testing: ``load_from`` in a Runner."""
    run = runner(config, tmp_path, load_from=path)
    run.load_or_resume()
    return run.model


def via_fine_tuning(config, path, tmp_path):
    """What training with ``load_from`` does before its first step: the
    ImageNet init (here none: no download), then the checkpoint."""
    run = runner(config, tmp_path, load_from=path,
                 model=dict(backbone=dict(init_cfg=None)))
    run._init_model_weights()
    run.load_or_resume()
    return run.model


def via_init_api(config, path, tmp_path):
    if 'segmentation' in config:
        from mmseg.apis import init_model
        return init_model(config, path, device='cpu')
    from mmdet.apis import init_detector
    return init_detector(config, path, device='cpu')


def via_inferencer(config, path, tmp_path):
    if 'segmentation' in config:
        from mmseg.apis import MMSegInferencer
        return MMSegInferencer(model=config, weights=path,
                               device='cpu').model
    from mmdet.apis import DetInferencer
    return DetInferencer(model=config, weights=path, device='cpu').model


def via_converted(config, path, tmp_path):
    """``tools/convert_weights.py`` on the release, then a strict load."""
    dst = str(tmp_path / 'converted.pth')
    argv = sys.argv
    sys.argv = ['convert_weights.py', path, dst]
    try:
        runpy.run_path(osp.join(TOOLS, 'convert_weights.py'),
                       run_name='__main__')
    finally:
        sys.argv = argv
    converted = safeload.load(dst)
    assert set(converted) == {'meta', 'state_dict'}
    assert 'backbone.stem.weight' in converted['state_dict']
    model = build(osp.relpath(config, REPO))
    load_checkpoint(model, dst, map_location='cpu', strict=True)
    model.dataset_meta = converted['meta']['dataset_meta']
    return model


PATHS = [via_load_checkpoint, via_test_tool, via_fine_tuning, via_init_api,
         via_inferencer, via_converted]


@pytest.mark.parametrize('load', PATHS, ids=[p.__name__[4:] for p in PATHS])
def test_release_gives_the_authors_network(release, load, tmp_path):
    kind, config, path, content, expected = release
    model = load(config, path, tmp_path)
    assert_outputs(model, expected)
    if load in (via_init_api, via_inferencer, via_converted):
        # the class names (and ADE20K's palette) of mmcv 1.x's meta
        meta = model.dataset_meta
        assert tuple(meta['classes']) == content['meta']['CLASSES']
        if kind == 'fpn':
            assert [list(c) for c in meta['palette']] == \
                [list(c) for c in content['meta']['PALETTE']]


def test_without_the_conversion_the_check_fails(release, tmp_path,
                                                monkeypatch):
    """The comparison has teeth: with torch's own loading (mmengine's
    non-strict rules) the backbone stays random and the outputs differ."""
    kind, config, path, _, expected = release
    monkeypatch.setattr(DenseBackbone, '_load_from_state_dict',
                        torch.nn.Module._load_from_state_dict)
    model = via_load_checkpoint(config, path, tmp_path)
    with pytest.raises(AssertionError, match='backbone'):
        assert_outputs(model, expected)


# -- checkpoints that do not fill the backbone -------------------------------

@pytest.fixture(scope='module')
def retinanet():
    return build(RELEASES['retinanet'][0])


def save(tmp_path, state, name='bad.pth'):
    path = str(tmp_path / name)
    torch.save({'meta': {}, 'state_dict': state}, path)
    return path


def test_resnet_detector_is_another_architecture(retinanet, tmp_path):
    from mmdet.models.backbones import ResNet
    state = {f'backbone.{k}': v for k, v in ResNet(50).state_dict().items()}
    state.update({k: v for k, v in retinanet.state_dict().items()
                  if not k.startswith('backbone.')})
    with pytest.raises(CheckpointFormatError,
                       match=r"'backbone\.conv1\.weight'.*another architecture"):
        load_checkpoint(retinanet, save(tmp_path, state))


def _release_state():
    content, _, _ = authors_release('retinanet')
    return content['state_dict']


def test_missing_stage_is_named(retinanet, tmp_path):
    state = {k: v for k, v in _release_state().items()
             if not k.startswith('backbone.network.6.')}
    with pytest.raises(CheckpointFormatError,
                       match=r"missing from checkpoint: \['backbone\.stages"
                       r"\.3\.blocks\.0\."):
        load_checkpoint(retinanet, save(tmp_path, state))


def test_misshaped_tensor_is_named(retinanet, tmp_path):
    state = _release_state()
    key = 'backbone.network.2.0.mlp.fc1.weight'
    state[key] = state[key][:256]
    with pytest.raises(CheckpointFormatError,
                       match=r'backbone\.stages\.1\.blocks\.0\.mlp\.fc1\.'
                       r'weight: checkpoint \(256, 128, 1, 1\) vs model '
                       r'\(512, 128, 1, 1\)'):
        load_checkpoint(retinanet, save(tmp_path, state))


def test_imagenet_file_as_load_from_is_an_error(retinanet, tmp_path):
    """A classifier's weights given to a whole detector land nowhere (no
    ``backbone.`` prefix): not a random backbone with a warning."""
    path = save(tmp_path, official_state(mmpretrain_poolformer()))
    with pytest.raises(CheckpointFormatError,
                       match=r"no tensor under 'backbone\.'"):
        load_checkpoint(retinanet, path)


def test_fork_last3_release_needs_out_indices_1_2_3(tmp_path):
    """The RetinaNet releases have no stride-4 norm: a backbone that
    returns stride 4 cannot be the authors' network."""
    state = {k: v for k, v in _release_state().items()
             if k.startswith('backbone.')}
    model = torch.nn.Module()
    model.backbone = PoolFormer('s12')
    with pytest.raises(CheckpointFormatError, match=r"backbone\.norm0\.weight"
                       r".*FORK_LAST3.*out_indices=\(1, 2, 3\)"):
        model.load_state_dict(state, strict=False)


def test_parts_left_out_by_design_are_dropped():
    """A Mask R-CNN's backbone (four outputs) loads into one built for
    strides 8-32: its stride-4 norm is not built, so it is not needed."""
    src = mmpretrain_poolformer(out_indices=(0, 2, 4, 6))
    model = PoolFormer('s12', out_indices=(1, 2, 3))
    model.load_state_dict(src.state_dict())
    with torch.no_grad():
        for ours, ref in zip(model.eval()(X), src(X)[1:]):
            assert_close(ours, ref)


def test_ema_wrapper_loads_a_release():
    """mmengine's EMA model (``module.`` prefix) reads the release too."""
    from mmengine.model import ExponentialMovingAverage
    src = mmpretrain_poolformer()
    ema = ExponentialMovingAverage(PoolFormer('s12'))
    state = {f'module.{k}': v for k, v in src.state_dict().items()}
    state['steps'] = torch.tensor(3)
    ema.load_state_dict(state)
    with torch.no_grad():
        for ours, ref in zip(ema.module.eval()(X), src(X)):
            assert_close(ours, ref)


# -- the tools end to end ------------------------------------------------------

def shapes_release(task, data, tmp_path):
    """A release-layout file for the demo's model of ``task`` (3 classes),
    and its config: the RetinaNet without ``norm0`` (FORK_LAST3)."""
    from mmengine.config import Config
    from helpers.configs import shapes_config
    from helpers.releases import mmcv1_meta, randomise_heads
    changes = dict(model=dict(test_cfg=dict(score_thr=0.0))) \
        if task == 'det' else {}
    cfg = shapes_config(tmp_path / 'cfg.py', task, data, **changes)
    built = randomise_heads(build(osp.relpath(cfg, REPO)))
    net = mmpretrain_poolformer(
        's12', out_indices=(2, 4, 6) if task == 'det' else (0, 2, 4, 6))
    state = {f'backbone.{k}': v for k, v in net.state_dict().items()}
    state.update({k: v for k, v in built.state_dict().items()
                  if not k.startswith('backbone.')})
    meta = Config.fromfile(cfg).train_dataloader.dataset.metainfo
    meta = mmcv1_meta(task, meta['classes'],
                      None if task == 'det' else meta['palette'])
    path = tmp_path / 'release.pth'
    torch.save(dict(meta=meta, state_dict=state, optimizer={}), path)
    return cfg, path


def library_tool(package):
    """mmdet's or mmseg's own ``tools/test.py`` (shipped in its .mim)."""
    module = __import__(package)
    path = osp.join(osp.dirname(module.__file__), '.mim', 'tools',
                    'test.py')
    if not osp.isfile(path):
        pytest.skip(f'{package} has no .mim/tools/test.py')
    return path


def predictions(path):
    """What tools/test.py --out wrote: per image, the boxes and scores
    (rounded), or the label image's bytes."""
    import pickle
    if str(path).endswith('.pkl'):
        with open(path, 'rb') as f:
            results = pickle.load(f)
        return [(r['img_path'], torch.as_tensor(
            r['pred_instances']['scores'][:20]).mul(1e4).round().tolist())
            for r in results]
    return sorted((p.name, p.read_bytes()) for p in path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize('task', ['det', 'seg'])
def test_test_tools_read_the_release(task, tiny_data, tmp_path):
    """Our tools/test.py gives the same predictions on the release as on
    its conversion by tools/convert_weights.py (a strict load), and the
    library's own tools/test.py the same metrics."""
    import json
    from helpers.checkout import run, tool
    cfg, release = shapes_release(task, tiny_data, tmp_path)
    converted = tmp_path / 'converted.pth'
    run(tool('convert_weights.py', release, converted), tmp_path)
    metrics, preds = {}, {}
    for name, ckpt in (('release', release), ('converted', converted)):
        work = tmp_path / name
        out_path = work / ('preds.pkl' if task == 'det' else 'preds')
        out = run(tool('test.py', cfg, ckpt, '--work-dir', work, '--out',
                       out_path), tmp_path)
        assert 'do not match' not in out.stdout + out.stderr
        metrics[name] = json.loads((work / 'test_metrics.json').read_text())
        preds[name] = predictions(out_path)
    assert preds['release'] == preds['converted']
    assert preds['release']
    package = 'mmdet' if task == 'det' else 'mmseg'
    out = run([sys.executable, library_tool(package), cfg, str(release),
               '--work-dir', str(tmp_path / 'library')], tmp_path)
    key = 'coco/bbox_mAP' if task == 'det' else 'mIoU'
    found = re.findall(rf'{key}: ([-\d.]+)', out.stdout + out.stderr)
    assert metrics['release'] == metrics['converted']
    assert found and abs(float(found[-1]) - metrics['release'][key]) < 1e-3
