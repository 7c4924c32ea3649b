"""The forms mmpoolformer gives mmdeploy's export (mmpoolformer/deploy.py)
compute PyTorch's results, and exported at one size, ONNX Runtime's at
others; mmdeploy's export module is given ``dynamo=False``. No mmdeploy
needed: tests/test_deploy/test_mmdeploy.py runs them inside its export."""
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmpoolformer import deploy, torchapi
from mmpoolformer.testing import assert_close

SIDES = [(16, 16), (13, 21), (7, 5), (1, 3), (6, 12)]


@pytest.mark.parametrize('size', SIDES)
@pytest.mark.parametrize('out', [1, 2, 3, 6, (2, 5), (6, None)])
def test_adaptive_avg_pool2d_is_pytorchs(size, out):
    x = torch.randn(2, 3, *size)
    assert_close(deploy.adaptive_avg_pool2d(x, out),
                 F.adaptive_avg_pool2d(x, out), f'{size} -> {out}')


def exported(module, x, path):
    """ONNX Runtime's session of ``module`` traced at ``x``, height and
    width dynamic."""
    import onnxruntime as ort
    torchapi.onnx_export(
        module, x, str(path), input_names=['x'], opset_version=11,
        dynamic_axes={'x': {0: 'batch', 2: 'height', 3: 'width'}})
    return ort.InferenceSession(str(path),
                                providers=['CPUExecutionProvider'])


def check_sizes(module, session, sizes):
    for size in sizes:
        x = torch.randn(1, 3, *size)
        got, = session.run(None, {'x': x.numpy()})
        with torch.no_grad():
            assert_close(torch.from_numpy(np.asarray(got)), module(x),
                         f'onnxruntime at {size}')


class Pyramid(torch.nn.Module):
    """UperNet's pyramid pooling: each scale pooled and resized back."""

    def forward(self, x):
        return torch.cat([
            F.interpolate(deploy.adaptive_avg_pool2d(x, s), x.shape[2:],
                          mode='bilinear', align_corners=False)
            for s in (1, 2, 3, 6)], 1)


def test_pyramid_pooling_exports_at_every_size(tmp_path):
    module = Pyramid()
    session = exported(module, torch.randn(1, 3, 16, 16), tmp_path / 'p.onnx')
    check_sizes(module, session, [(16, 16), (13, 21), (7, 30)])


def test_upsample_exports_at_every_size(tmp_path):
    """mmseg's Upsample with a scale factor: the same as its own forward,
    and in the graph, the size follows the input's."""
    from mmseg.models.utils import Upsample
    up = Upsample(scale_factor=2, mode='bilinear', align_corners=False)
    x = torch.randn(1, 3, 5, 7)
    assert_close(deploy.upsample_forward(up, x), up(x), 'eager')

    class Module(torch.nn.Module):
        def forward(self, x):
            return deploy.upsample_forward(up, x)

    module = Module()
    session = exported(module, torch.randn(1, 3, 12, 12), tmp_path / 'u.onnx')
    check_sizes(module, session, [(12, 16), (7, 5)])


def test_mmdeploy_export_passes_dynamo_false(monkeypatch):
    """What mmdeploy's export module sees as ``torch``: the same torch,
    whose ``onnx.export`` passes ``dynamo=False`` where torch takes it."""
    calls = []
    monkeypatch.setattr(torch.onnx, 'export',
                        lambda *args, **kwargs: calls.append(kwargs))
    module = types.SimpleNamespace(torch=torch)
    deploy.export_with_torchscript(module)
    deploy.export_with_torchscript(module)  # idempotent
    module.torch.onnx.export('model', 'args', 'path', opset_version=11)
    expected = dict(opset_version=11)
    if torchapi.VERSION >= '2.5':
        expected['dynamo'] = False
    assert calls == [expected]
    assert module.torch.no_grad is torch.no_grad
    assert module.torch.onnx.OperatorExportTypes is \
        torch.onnx.OperatorExportTypes
