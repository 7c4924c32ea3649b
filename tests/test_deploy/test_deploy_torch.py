"""mmdeploy's own symbolics on newer torch: its RoIAlign (Mask R-CNN's RoI
heads) exports to ONNX Runtime and gives mmcv's results on every torch of
the range, ``_cast_Long`` given back to torch's ``symbolic_opset9`` where
torch lacks it (mmpoolformer/deploy.py). Runs in the deploy environments;
skipped where mmdeploy is not installed."""
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime')
pytest.importorskip('mmdeploy')

from helpers.checkout import REPO  # noqa: E402
from mmpoolformer.testing import assert_close  # noqa: E402


class RoIs(torch.nn.Module):
    """mmdet's RoI extractor's op: mmcv's RoIAlign, as the recipes set it."""

    def __init__(self):
        super().__init__()
        from mmcv.ops import RoIAlign
        self.op = RoIAlign(7, spatial_scale=1 / 8, sampling_ratio=0,
                           aligned=True)

    def forward(self, x, rois):
        return self.op(x, rois)


def test_roi_align_exports(tmp_path):
    import onnxruntime as ort
    from mmdeploy.apis.onnx import export
    from mmdeploy.utils import load_config
    cfg, = load_config(osp.join(REPO, 'configs', 'deploy',
                                'instance-seg_onnxruntime_dynamic.py'))
    rng = np.random.default_rng(0)
    x = torch.randn(2, 4, 13, 19)
    corners = torch.from_numpy(rng.uniform(0, 100, (6, 4))).float()
    rois = torch.cat([torch.tensor([0., 1, 1, 0, 1, 0])[:, None],
                      torch.minimum(corners[:, :2], corners[:, 2:]),
                      torch.maximum(corners[:, :2], corners[:, 2:])], 1)
    module = RoIs()
    export(module, (x, rois), str(tmp_path / 'rois'), backend='onnxruntime',
           input_names=['x', 'rois'], output_names=['out'],
           context_info=dict(deploy_cfg=cfg),
           opset_version=cfg.onnx_config.opset_version,
           dynamic_axes=dict(x={0: 'n', 2: 'h', 3: 'w'}, rois={0: 'k'},
                             out={0: 'k'}))
    import onnx
    graph = onnx.load(str(tmp_path / 'rois.onnx')).graph
    ops = [node.op_type for node in graph.node]
    assert 'RoiAlign' in ops, ops  # mmdeploy's symbolic, ONNX's op
    session = ort.InferenceSession(str(tmp_path / 'rois.onnx'),
                                   providers=['CPUExecutionProvider'])
    got, = session.run(None, {'x': x.numpy(), 'rois': rois.numpy()})
    with torch.no_grad():
        assert_close(torch.from_numpy(got), module(x, rois), 'RoIAlign')
