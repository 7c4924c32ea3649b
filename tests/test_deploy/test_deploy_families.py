"""Every family's mixers and norms convert: mmdeploy converts Semantic FPN
with the backbones test_mmdeploy.py does not, with the shipped segmentation
deploy config, and ONNX Runtime gives PyTorch's logits at two sizes other
than the traced one (sides not multiples of 4 or 32). With PoolFormer-S12
(pooling, GroupNorm) and UperNet ConvFormer-S18/CAFormer-S18 there, this
covers every token mixer of the shipped configs (pooling, identity,
separable convolution, attention) in both norms of the MetaFormer
baselines (over channels; over channels and positions). The detectors,
checked there with PoolFormer-S12, are checked here with ConvFormer
(RetinaNet) and CAFormer (Mask R-CNN) too. Runs in the deploy environment;
skipped where mmdeploy is not installed."""
import pytest
import torch

pytest.importorskip('onnxruntime')
pytest.importorskip('mmdeploy')

from test_mmdeploy import (REPORT, SIZES, check_detector,  # noqa: E402
                           check_segmenter)

#: recipe: what it adds to test_mmdeploy.py's
FAMILIES = {
    # pooling in the MetaFormer blocks, the norm over channels and positions
    'fpn_poolformerv2_s12.py': 'PoolFormerV2',
    # no token mixer at all: the norms, scales and MLPs alone
    'fpn_identityformer_s12.py': 'IdentityFormer',
    # separable convolution and attention (on the 1/16 and 1/32 maps, whose
    # token counts follow the input), the norm over channels, in FPN
    'fpn_caformer_s18.py': 'CAFormer',
}
#: detection recipe: its deploy config
DETECTORS = {
    'retinanet_convformer_s18.py': 'detection_onnxruntime_dynamic.py',
    'mask_rcnn_caformer_s18.py': 'instance-seg_onnxruntime_dynamic.py',
}


@pytest.fixture(scope='module', autouse=True)
def report():
    yield
    for recipe in [*FAMILIES, *DETECTORS]:  # test_mmdeploy.py prints the rest
        if recipe in REPORT:
            print(f'\n{recipe}: ' + '; '.join(REPORT.pop(recipe)))


@pytest.mark.slow
@pytest.mark.parametrize('recipe', list(FAMILIES))
def test_family_converts(tmp_path, recipe):
    """ONNX Runtime's logits are PyTorch's (``check_segmenter`` asserts
    it) at both sizes."""
    checked = [size for size, *_ in check_segmenter(tmp_path, recipe)]
    assert checked == SIZES


@pytest.mark.slow
@pytest.mark.parametrize('recipe', list(DETECTORS))
def test_detector_family(tmp_path, recipe):
    """The network's outputs, and the detections of ONNX Runtime, of the
    rewritten model and of mmdet, agree at both sizes (``check_detector``
    asserts it)."""
    got = check_detector(tmp_path, recipe, DETECTORS[recipe])
    assert torch.isfinite(got.bboxes).all()
