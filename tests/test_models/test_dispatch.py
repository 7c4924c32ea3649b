"""Which path a forward runs (``fused`` and :func:`fused.applies`), and what
the op-by-op path under tracing makes possible: FLOP counting and ONNX
export of the default backbone."""
import numpy as np
import pytest
import torch
from mmengine.analysis import get_model_complexity_info

from mmpoolformer import PoolFormer, torchapi
from mmpoolformer.models import fused as fast
from mmpoolformer.testing import assert_close, randomise
from helpers.tiers import SMALLEST, sample

SMALL = dict(depths=[1, 1, 1, 1], dims=[8, 16, 24, 32])
# The paper's ImageNet MACs at 224x224 (G); its classifier (norm, pooled
# linear head) adds under 0.001 G.
PAPER_GMACS = dict(s12=1.8, s24=3.4, s36=5.0, m36=8.8, m48=11.6)


@pytest.fixture
def fast_batches(monkeypatch):
    """The batch size of every block the fast path runs."""
    calls = []
    original = fast.block_forward

    def spy(x, *args, **kwargs):
        calls.append(x.shape[0])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(fast, 'block_forward', spy)
    return calls


def forward(model, batch, grad=True, size=(32, 48)):
    x = torch.randn(batch, 3, *size)
    with torch.set_grad_enabled(grad):
        return model(x)


@pytest.mark.parametrize('mode, batch, grad, runs_fast', [
    (True, 1, True, True),  # forced
    (True, 2, False, True),
    (False, 2, True, False),
    (False, 1, False, False),
])
def test_forced_modes(fast_batches, mode, batch, grad, runs_fast):
    """True and False run their path at any size, without measuring
    ('auto': test_auto.py)."""
    forward(PoolFormer(SMALL, fused=mode).train(), batch, grad)
    assert fast_batches == ([batch] * 4 if runs_fast else [])


def test_default_is_auto():
    assert PoolFormer(SMALL).fused == 'auto'
    with pytest.raises(ValueError, match=r"fused.*'yes'"):
        PoolFormer(SMALL, fused='yes')


def test_never_under_autocast_dropout_or_empty_batch(fast_batches):
    model = PoolFormer(SMALL, fused=True).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        forward(model, 2)
    forward(PoolFormer(SMALL, fused=True, drop_rate=0.1).train(), 2)
    assert fast_batches == []
    # dropout is off in eval mode: the fast path runs again
    forward(PoolFormer(SMALL, fused=True, drop_rate=0.1).eval(), 2)
    assert fast_batches == [2] * 4


def test_auto_measures_on_cpu_and_cuda_only():
    """Elsewhere 'auto' cannot time both paths: it runs op by op."""
    assert fast.measurable(torch.empty(1, 3, 8, 8))
    assert not fast.measurable(torch.empty(1, 3, 8, 8, device='meta'))


def test_tracers_see_the_op_by_op_block(fast_batches):
    model = PoolFormer(SMALL, fused=True).eval()
    x = torch.randn(2, 3, 32, 48)
    torch.jit.trace(model, x, check_trace=False)
    if hasattr(torch, 'export'):  # torch >= 2.1
        torch.export.export(model, (x, ))
    assert fast_batches == []


def gmacs(model, shape=(1, 3, 224, 224)):
    info = get_model_complexity_info(model, inputs=(torch.randn(shape), ),
                                     show_table=False, show_arch=False)
    return info['flops'] / 1e9


@pytest.mark.parametrize('arch', sample(list(PAPER_GMACS),
                                        lambda a: a in SMALLEST))
def test_flop_count_matches_paper(arch):
    assert round(gmacs(PoolFormer(arch).eval()), 1) == PAPER_GMACS[arch]


def test_flop_count_is_the_op_by_op_count(fast_batches):
    # training mode, where 'auto' would measure (and the spy see it)
    counts = [gmacs(PoolFormer('s12', fused=mode), (2, 3, 128, 160))
              for mode in ('auto', True, False)]
    assert counts[0] == counts[1] == counts[2]
    assert fast_batches == []


@pytest.mark.parametrize('dynamo', [False, True])
def test_default_backbone_exports_to_onnx(tmp_path, fast_batches, dynamo):
    import onnxruntime as ort
    torch.manual_seed(0)
    model = randomise(PoolFormer('s12')).eval()
    x = torch.randn(2, 3, 64, 96)
    path = str(tmp_path / 'poolformer.onnx')
    if dynamo and torchapi.VERSION < '2.5':
        with pytest.raises(torchapi.TorchTooOld, match='needs torch >= 2.5'):
            torchapi.onnx_export(model, x, path, dynamo)
        return
    torchapi.onnx_export(model, x, path, dynamo, opset_version=17)
    assert fast_batches == []
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert len(got) == len(expected) == 4
    for a, b in zip(got, expected):
        assert_close(torch.from_numpy(np.asarray(a)), b, 'onnxruntime')


def test_exported_backbone_pads_every_size(tmp_path):
    """Exported at a size the stem's stride divides, the graph still pads
    inputs whose sides are 1, 2 or 3 mod 4 onto PyTorch's grid."""
    import onnxruntime as ort
    torch.manual_seed(0)
    model = randomise(PoolFormer(SMALL)).eval()
    path = str(tmp_path / 'poolformer.onnx')
    torchapi.onnx_export(
        model, torch.randn(1, 3, 64, 96), path, input_names=['image'],
        dynamic_axes={'image': {0: 'batch', 2: 'height', 3: 'width'}},
        opset_version=17)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for size in [(98, 101), (99, 66)]:
        x = torch.randn(1, 3, *size)
        got = session.run(None, {'image': x.numpy()})
        with torch.no_grad():
            expected = model(x)
        for a, b in zip(got, expected):
            assert_close(torch.from_numpy(a), b, f'onnxruntime at {size}')
