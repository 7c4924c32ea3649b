"""The model index (configs/<task>/metafile.yml and model-index.yml, read
by ``mim search`` and mmengine) is in step with the configs. When a config
is added or changed, ``python tools/model_index.py`` rewrites it (counting
FLOPs only where needed)."""
import importlib.util
import os.path as osp

import pytest
import yaml

from build_env import REPO
from helpers.tiers import per_config


def _tool(name):
    """``tools/NAME.py`` as a module (a checkout-only script, not shipped)."""
    spec = importlib.util.spec_from_file_location(
        f'tools_{name}', osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


model_index = _tool('model_index')

CONFIGS = [p for task in model_index.TASKS for p in model_index.configs(task)]
# FLOPs counting takes 10-60 s a config on a CPU (70 configs: most of an
# hour), so the suite recounts two; `python tools/model_index.py --recount`
# followed by `git diff` recounts them all.
SAMPLE = ['configs/detection/retinanet_poolformer_s12.py',
          'configs/segmentation/fpn_poolformer_s12.py']


def load(path):
    with open(osp.join(REPO, path)) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope='module')
def entries():
    """Every stored entry, in the order of the metafiles."""
    index = load(model_index.INDEX)
    return [m for path in index['Import'] for m in load(path)['Models']]


def test_index_imports_each_task_metafile():
    assert load(model_index.INDEX) == model_index.index()
    for path in model_index.index()['Import']:
        assert osp.isfile(osp.join(REPO, path))


def test_one_entry_per_config(entries):
    stored = [m['Config'] for m in entries]
    assert sorted(stored) == sorted(CONFIGS), \
        'run python tools/model_index.py'
    names = [m['Name'] for m in entries]
    assert len(set(names)) == len(names)
    for path in stored:
        assert osp.isfile(osp.join(REPO, path))


@pytest.mark.parametrize('path', per_config(CONFIGS))
def test_entry_matches_config(entries, path):
    """Name, collection, backbone, parameters (the built model's), data,
    schedule, ImageNet weights and published metrics."""
    stored = {m['Config']: m for m in entries}
    assert path in stored, 'run python tools/model_index.py'
    meta = stored[path]['Metadata']
    expected = model_index.entry(
        path, flops=(meta.get('FLOPs'), meta.get('FLOPs Input Size')))
    assert stored[path] == expected


def check_flops(entries, path):
    stored = {m['Config']: m['Metadata'] for m in entries}[path]
    assert 'FLOPs' in stored, f'{path}: run python tools/model_index.py'
    flops, size = model_index.count_flops(path)
    assert (stored['FLOPs'], stored['FLOPs Input Size']) == (flops, size)


@pytest.mark.integration
@pytest.mark.parametrize('path', SAMPLE, ids=osp.basename)
def test_flops_sample(entries, path):
    check_flops(entries, path)


def test_published_metrics_only_for_the_papers_pairs(entries):
    """The PoolFormer paper's COCO and ADE20K tables; no MetaFormer
    baseline has published numbers for these recipes."""
    with_results = {m['Name']: m['Results'] for m in entries
                    if 'Results' in m}
    assert sorted(with_results) == sorted(
        [f'{det}_poolformer_{a}' for det in ('retinanet', 'mask_rcnn')
         for a in ('s12', 's24', 's36')] +
        [f'fpn_poolformer_{a}' for a in ('s12', 's24', 's36', 'm36', 'm48')])
    assert with_results['retinanet_poolformer_s12'] == [dict(
        Task='Object Detection', Dataset='COCO', Metrics={'box AP': 36.2})]
    assert with_results['mask_rcnn_poolformer_s36'] == [
        dict(Task='Object Detection', Dataset='COCO',
             Metrics={'box AP': 41.0}),
        dict(Task='Instance Segmentation', Dataset='COCO',
             Metrics={'mask AP': 37.7})]
    assert with_results['fpn_poolformer_m48'] == [dict(
        Task='Semantic Segmentation', Dataset='ADE20K',
        Metrics={'mIoU': 42.7})]
