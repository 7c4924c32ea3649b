"""mmdeploy exports a segmentor's whole-image inference whatever its
test_cfg: converting a model config whose test mode is 'slide' (the UperNet
recipes') is an error naming the setting and the way out, raised before
anything is written; mode='whole' converts. Runs in the deploy environment;
skipped where mmdeploy is not installed."""
import os.path as osp

import numpy as np
import pytest

pytest.importorskip('onnxruntime')
pytest.importorskip('mmdeploy')

from helpers.checkout import REPO  # noqa: E402
from test_mmdeploy import model_config  # noqa: E402

DEPLOY = osp.join(REPO, 'configs', 'deploy',
                  'segmentation_onnxruntime_dynamic.py')


def convert(tmp_path, cfg):
    from mmdeploy.apis import torch2onnx
    image = np.zeros((64, 96, 3), dtype=np.uint8)
    torch2onnx(image, str(tmp_path), 'end2end.onnx', DEPLOY, cfg, None, 'cpu')


def test_slide_is_an_error(tmp_path):
    """The UperNet recipe as shipped (mode='slide')."""
    cfg = model_config('upernet_convformer_s18.py', whole=False)
    assert cfg.model.test_cfg.mode == 'slide'
    with pytest.raises(ValueError) as error:
        convert(tmp_path, cfg)
    message = str(error.value)
    assert "model.test_cfg.mode='slide'" in message
    assert 'crop_size=(512, 512)' in message
    assert "model.test_cfg=dict(mode='whole')" in message
    assert not osp.exists(tmp_path / 'end2end.onnx')


@pytest.mark.slow
def test_whole_converts(tmp_path):
    """Semantic FPN, whose recipe tests the whole image: converted, with
    the test_cfg said or left to mmseg's default; slide stops it."""
    cfg = model_config('fpn_poolformer_s12.py', whole=False)
    assert cfg.model.test_cfg.mode == 'whole'
    convert(tmp_path / 'said', cfg)
    assert osp.getsize(tmp_path / 'said' / 'end2end.onnx') > 0
    cfg.model.test_cfg = dict()
    convert(tmp_path / 'default', cfg)
    assert osp.getsize(tmp_path / 'default' / 'end2end.onnx') > 0
    cfg.model.test_cfg = dict(mode='slide', crop_size=(32, 32),
                              stride=(16, 16))
    with pytest.raises(ValueError, match="mode='slide'"):
        convert(tmp_path / 'slide', cfg)
