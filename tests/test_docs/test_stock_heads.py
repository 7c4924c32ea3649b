"""docs/usage.md's table of stock heads: each row, built from mmdet's or
mmseg's own config with our backbone swapped in, trains one step with a
gradient in every backbone parameter, on a pyramid at the strides its head
assumes."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

from mmpoolformer.engine import check
from mmpoolformer.engine.check import pyramid_problems
from helpers.checkout import REPO
from mmpoolformer.models.checks import unused_outputs_message
from mmpoolformer.testing.heads import (STOCK_HEADS, random_batch,
                                        sizes_at, stock_heads_table,
                                        stock_model_cfg, train_step)
from helpers.tiers import sample

ROWS = {row['head']: row for row in STOCK_HEADS}
S12 = dict(type='PoolFormer', arch='s12')
# Test-only changes for speed, which leave the pyramid alone: DINO's 900
# queries would need 900 encoder tokens (a 192x256 input), and its six
# encoder and decoder layers take most of a step.
FAST = {'DINO': dict(num_queries=100, encoder=dict(num_layers=1),
                     decoder=dict(num_layers=1))}
CASES = [(name, S12) for name in ROWS] + [
    # family members with S12's channels, on a one-stage and a seg head
    ('RetinaNet', dict(type='ConvFormer', arch='s18')),
    ('UperNet', dict(type='PoolFormerV2', arch='s12')),
]


def test_usage_table_is_the_tested_one():
    with open(osp.join(REPO, 'docs', 'usage.md')) as f:
        page = f.read()
    assert stock_heads_table() in page


def build(row, backbone, size):
    model_cfg, scope = stock_model_cfg(row, backbone)
    model_cfg = Config(dict(model=model_cfg))
    model_cfg.merge_from_dict(dict(model=FAST.get(row['head'], {})))
    model_cfg = model_cfg.model
    if scope == 'mmseg':  # pads to the 512x512 crop otherwise: slow
        model_cfg.data_preprocessor.size = size
    init_default_scope(scope)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    model.init_weights()
    return model, scope


def head_strides(model):
    """The strides each head states (as PyramidCheckHook reads them), by
    owner, as ints; each head reads the first levels, square strides."""
    found = {}
    for owner, index, strides in check.head_strides(model):
        assert all(h == w for h, w in strides), owner
        assert index == list(range(len(strides))), owner
        found[owner] = [h for h, _ in strides]
    return found


@pytest.mark.parametrize('name, backbone', sample(
    CASES, lambda c: c[1]['type'] == 'PoolFormer' and 'Cascade' not in c[0],
    ids=[f'{n}-{b["type"]}' for n, b in CASES]))
def test_stock_head_trains_on_its_grid(name, backbone):
    row = ROWS[name]
    size = (96, 128)
    model, scope = build(row, backbone, size)
    out = train_step(model, random_batch(scope, size))
    assert torch.isfinite(torch.tensor(out['loss']))
    assert out['input'] == size
    missing = [n for n in out['no_grad'] if n.startswith('backbone.')]
    assert not missing, f'{name}: no gradient in {missing}'
    assert out['unused'] == []  # the backbone's own check stays silent
    # The maps the heads read are at the row's strides...
    assert out['features'] == sizes_at(size, row['strides']), out
    # ... which are the ones the heads assume (RoI extractors read the
    # first levels).
    stated = head_strides(model)
    if scope == 'mmdet' and name != 'DINO':
        assert stated, f'{name}: no head states its strides'
    for owner, strides in stated.items():
        assert strides == list(row['strides'][:len(strides)]), owner
    if name == 'DINO':
        assert model.num_feature_levels == len(row['strides'])
    if name == 'UperNet':
        assert list(model.decode_head.in_index) == [0, 1, 2, 3]
        assert model.auxiliary_head.in_index == 2
    assert pyramid_problems(model, out['input'], out['backbone'],
                            out['features']) == []


def test_stock_retinanet_grid_is_wrong_without_start_level():
    """The issue's case: stock FPN (start_level=1) on out_indices (1, 2, 3)
    makes strides 16-256 and leaves norm1 without a gradient."""
    row = dict(ROWS['RetinaNet'],
               changes=dict(neck=dict(in_channels=[128, 320, 512])))
    size = (96, 128)
    model, scope = build(row, S12, size)
    out = train_step(model, random_batch(scope, size))
    assert out['features'] == sizes_at(size, (16, 32, 64, 128, 256))
    assert [n for n in out['no_grad'] if n.startswith('backbone.')] == \
        ['backbone.norm1.weight', 'backbone.norm1.bias']
    # the backbone says so by itself, as PyramidCheckHook would
    assert out['unused'] == [unused_outputs_message('PoolFormer', (1, 2, 3),
                                                    [1])]
    assert 'output 1 (stride 8, norm1)' in out['unused'][0]
    problems = pyramid_problems(model, out['input'], out['backbone'],
                                out['features'])
    assert len(problems) == 2, problems
    assert 'bbox_head.prior_generator assumes strides 8, 16, 32, 64, 128' \
        in problems[0]
    assert 'start_level=1' in problems[1]


def test_default_out_indices_leave_norm0_unused_on_stock_retinanet():
    """docs/usage.md's DDP caveat: all four outputs into the stock FPN
    (start_level=1) give the right strides, but norm0 is never used."""
    row = dict(ROWS['RetinaNet'], out_indices=(0, 1, 2, 3),
               changes=dict(neck=dict(in_channels=[64, 128, 320, 512])))
    size = (96, 128)
    model, scope = build(row, S12, size)
    out = train_step(model, random_batch(scope, size))
    assert out['features'] == sizes_at(size, row['strides'])
    assert [n for n in out['no_grad'] if n.startswith('backbone.')] == \
        ['backbone.norm0.weight', 'backbone.norm0.bias']
    assert out['unused'] == [unused_outputs_message(
        'PoolFormer', (0, 1, 2, 3), [0])]
    assert 'output 0 (stride 4, norm0)' in out['unused'][0]
