"""The backbone notices by itself, at its first training backward, which of
its selected outputs got no gradient, and warns once with the message
PyramidCheckHook gives; nothing after that, nothing in eval, under no_grad,
tracing or export, and its outputs are the same. (The two traps on stock
RetinaNet and the silence on every stock head and config are tested where
those are built: tests/test_docs/test_stock_heads.py and
tests/helpers/configs.py's train_and_predict.)"""
import warnings

import pytest
import torch

from mmpoolformer import ConvFormer, PoolFormer
from mmpoolformer.models.checks import (UnusedOutputWarning,
                                      unused_outputs_message)

X = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def step(model, use=None):
    """A training step reading the outputs at positions ``use`` (all by
    default); the unused-output warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        outs = model.train()(X)
        use = range(len(outs)) if use is None else use
        sum(outs[i].sum() for i in use).backward()
    return [str(w.message) for w in caught
            if issubclass(w.category, UnusedOutputWarning)]


@pytest.mark.parametrize('cls', [PoolFormer, ConvFormer])
def test_warns_once_naming_output_stride_norm_and_fix(cls):
    model = cls(out_indices=(1, 2, 3))
    (message, ) = step(model, use=[1, 2])  # output 1 (stride 8) unread
    assert message == unused_outputs_message(cls.__name__, (1, 2, 3), [1])
    assert 'output 1 (stride 8, norm1)' in message
    assert 'start_level=0' in message and 'out_indices=(2, 3)' in message
    assert step(model, use=[1, 2]) == []  # once: no check after the first


def test_names_every_unread_output():
    (message, ) = step(PoolFormer(), use=[3])
    assert 'outputs 0 (stride 4, norm0) and 1 (stride 8, norm1) and 2 ' \
        '(stride 16, norm2) of out_indices=(0, 1, 2, 3)' in message


def test_silent_when_every_output_is_read_or_frozen():
    assert step(PoolFormer()) == []
    # output 0 is frozen: it has no gradient to get
    assert step(PoolFormer(frozen_stages=1), use=[1, 2, 3]) == []


def test_eval_no_grad_and_tracing_leave_the_check_for_training():
    model = PoolFormer(out_indices=(1, 2, 3))
    with torch.no_grad():
        model.train()(X)
    model.eval()(X)
    torch.jit.trace(model.train(), X, check_trace=False)
    assert not model._outputs_checked
    assert len(step(model, use=[1, 2])) == 1


def test_outputs_unchanged_by_the_check():
    model = PoolFormer().train()
    first = model(X)  # the watched forward
    assert model._outputs_checked
    again = model(X)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    model.zero_grad()
    sum(o.sum() for o in first).backward()
    watched = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    sum(o.sum() for o in again).backward()
    assert all(torch.equal(a, p.grad) for a, p in
               zip(watched, model.parameters()))
