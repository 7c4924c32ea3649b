"""The whole model gives the same answer on both block paths: each head
family we ship, built from our config (or docs/usage.md's stock row where
we ship none) with random weights, predicts and trains one step alike with
``fused=True`` and ``fused=False``, and the backbone hands the heads
contiguous maps on both."""
import copy
import random

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

from helpers.configs import CONFIGS, build
from mmpoolformer.testing import randomise
from mmpoolformer.testing.heads import (STOCK_HEADS, random_batch,
                                        stock_model_cfg)

# a whole detector or segmentor, two steps and two predictions each
pytestmark = pytest.mark.slow
SIZE = (128, 160)
#: Ours where we ship a config; docs/usage.md's stock rows otherwise.
OURS = {'RetinaNet': 'detection/retinanet_poolformer_s12.py',
        'Mask R-CNN': 'detection/mask_rcnn_poolformer_s12.py',
        'Semantic FPN': 'segmentation/fpn_poolformer_s12.py'}
STOCK = {row['head']: row for row in STOCK_HEADS}
HEADS = list(OURS) + ['UperNet', 'FCOS', 'Cascade Mask R-CNN', 'DINO']
# As test_stock_heads: DINO's 900 queries and six layers each way are most
# of its step; fewer leave the pyramid and the ops alone.
FAST = {'DINO': dict(num_queries=100, encoder=dict(num_layers=1),
                     decoder=dict(num_layers=1))}
#: fp32 rounding, relative to each tensor's largest value: the paths differ
#: by ~1e-6 of the backbone's outputs; heads carry it on.
TOL = 1e-4
#: Gradients, relative to the largest in their layer: sums over the map
#: where most terms cancel (a LayerScale's, a conv's weight) and heads'
#: GroupNorms of small maps amplify the paths' rounding. Worst measured:
#: 6.3e-3 (Cascade's stem), 1.9e-3 (FCOS's GN head), 1.0e-3 (UperNet's
#: norm1), 1.1e-4 (Mask R-CNN's stage 3); a mislaid map moves them by
#: their whole size.
GRAD_TOL = 1e-2
#: Cascade's three stages each refine the previous stage's boxes, and the
#: rounding compounds: 1.2e-4 in stage 2's loss and 1.4e-2 in a stage-0
#: norm's gradient measured.
SLACK = {'Cascade Mask R-CNN': 10}


def make(head):
    """The model of ``head`` with S12 and random weights (order-1 block
    scales, :func:`randomise`), in 3 classes where the head is stock; and
    its scope."""
    torch.manual_seed(0)
    if head in OURS:
        model, cfg = build(CONFIGS / OURS[head], SIZE)
        scope = cfg.default_scope
    else:
        model_cfg, scope = stock_model_cfg(
            STOCK[head], dict(type='PoolFormer', arch='s12'))
        model_cfg = Config(dict(model=model_cfg))
        model_cfg.merge_from_dict(dict(model=FAST.get(head, {})))
        model_cfg = model_cfg.model
        if scope == 'mmseg':
            model_cfg.data_preprocessor.size = SIZE
        init_default_scope(scope)
        model = revert_sync_batchnorm(MODELS.build(model_cfg))
    model.init_weights()
    randomise(model.backbone)
    model.state = copy.deepcopy(model.state_dict())
    return model, scope


def run(model, batch, fused):
    """One training step's losses and gradients, then the predictions for
    ``batch``, with the blocks on one path; and whether every backbone
    output was contiguous."""
    model.backbone.fused = fused
    # as built: the training step moves the heads' BN statistics
    model.load_state_dict(model.state)
    layouts = []
    hook = model.backbone.register_forward_hook(
        lambda m, args, outs: layouts.extend(o.is_contiguous()
                                             for o in outs))
    # the samplers and DINO's denoising queries draw the same numbers
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    try:
        model.train()
        model.zero_grad(set_to_none=True)
        data = model.data_preprocessor(copy.deepcopy(batch), True)
        loss, terms = model.parse_losses(model(**data, mode='loss'))
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters()
                 if p.grad is not None}
        model.eval()
        with torch.no_grad():
            preds = model(**model.data_preprocessor(copy.deepcopy(batch),
                                                    False), mode='predict')
    finally:
        hook.remove()
    assert all(p.ran_fast is fused for p in model.backbone.stages)
    return dict(terms=terms, grads=grads, preds=preds,
                contiguous=all(layouts))


def tensors(preds):
    """What a prediction says, by name: boxes, scores, labels and masks
    (mmdet); logits and labels (mmseg)."""
    found = {}
    for i, sample in enumerate(preds):
        if 'pred_instances' in sample:
            inst = sample.pred_instances
            for key in ('bboxes', 'scores', 'labels', 'masks'):
                if key in inst:
                    found[f'{i}.{key}'] = inst[key]
        else:
            found[f'{i}.seg_logits'] = sample.seg_logits.data
            found[f'{i}.pred_sem_seg'] = sample.pred_sem_seg.data
    return found


def peak(t):
    return t.abs().max().item() if t.numel() else 0.


def close(got, want, name, tol=TOL, scale=0.):
    """``got`` equals ``want`` to ``tol`` of ``want``'s largest value (or
    of ``scale``, if larger)."""
    assert got.shape == want.shape, f'{name}: {got.shape} vs {want.shape}'
    if got.dtype == torch.bool or not got.is_floating_point():
        assert torch.equal(got, want), f'{name}: differs'
        return
    err = peak(got - want)
    scale = max(peak(want), scale)
    assert err <= tol * scale, f'{name}: {err:.2e} at scale {scale:.2e}'


def assert_same(fast, plain, slack=1):
    assert fast['contiguous'] and plain['contiguous'], 'not contiguous'
    assert fast['terms'].keys() == plain['terms'].keys()
    for key, value in plain['terms'].items():
        close(torch.as_tensor(fast['terms'][key]), torch.as_tensor(value),
              key, slack * TOL)
    assert fast['grads'].keys() == plain['grads'].keys()
    # Rounding is relative to what flows through a layer: norm1.bias's
    # gradient is 0 (the fast path's exact one) or rounding noise of
    # norm1.weight's (op by op's).
    layer = {}
    for key, value in plain['grads'].items():
        owner = key.rsplit('.', 1)[0]
        layer[owner] = max(layer.get(owner, 0.), peak(value))
    for key, value in plain['grads'].items():
        close(fast['grads'][key], value, key, slack * GRAD_TOL,
              layer[key.rsplit('.', 1)[0]])
    got, want = tensors(fast['preds']), tensors(plain['preds'])
    assert got.keys() == want.keys() and want
    for key, value in want.items():
        close(got[key], value, key, slack * TOL)


@pytest.mark.parametrize('head', HEADS)
def test_both_paths_give_the_same_model(head):
    model, scope = make(head)
    batch = random_batch(scope, SIZE)
    assert_same(run(model, batch, True), run(model, batch, False),
                SLACK.get(head, 1))


def test_a_channels_last_output_is_caught(monkeypatch):
    """One backbone output handed over channels-last on the fast path (as
    it was): the layout check fails, and so do the numbers, since mmcv's
    RoIAlign reads the map as NCHW."""
    model, scope = make('Mask R-CNN')
    cls = type(model.backbone)
    forward = cls.forward

    def mislaid(self, x):
        outs = list(forward(self, x))
        if self.fused is True:
            outs[0] = outs[0].contiguous(memory_format=torch.channels_last)
        return tuple(outs)

    monkeypatch.setattr(cls, 'forward', mislaid)
    batch = random_batch(scope, SIZE)
    fast, plain = run(model, batch, True), run(model, batch, False)
    assert not fast['contiguous'] and plain['contiguous']
    with pytest.raises(AssertionError, match='contiguous'):
        assert_same(fast, plain)
    fast['contiguous'] = True
    with pytest.raises(AssertionError, match='at scale|vs|differs'):
        assert_same(fast, plain)
