"""mmdeploy converts the recipes with the deploy configs in configs/deploy/
(its Python API: ``torch2onnx``, then the task processor's ONNX Runtime
model), and ONNX Runtime gives PyTorch's outputs at two input sizes that
differ from the exported one, with sides that are 1, 2 or 3 mod 4 and no
multiples of 32 before the pipeline's padding. Random weights; the test
pipelines load the image at its own size. Runs in the deploy environment
(``tools/setup_env.sh deploy``); skipped where mmdeploy is not installed."""
import copy
import os.path as osp
import time

import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime')
pytest.importorskip('mmdeploy')

from mmengine.config import Config  # noqa: E402

from helpers.checkout import REPO  # noqa: E402
from helpers.configs import build  # noqa: E402
from mmpoolformer.testing import randomise  # noqa: E402

DEPLOY = osp.join(REPO, 'configs', 'deploy')
EXPORT = (64, 96)  # (H, W) of the image the graph is traced at
SIZES = [(99, 150), (90, 173)]
#: Conversion times and agreement, printed at the end (pytest -s).
REPORT = {}


@pytest.fixture(scope='module', autouse=True)
def report():
    yield
    for name, lines in REPORT.items():
        print(f'\n{name}: ' + '; '.join(lines))


def model_config(recipe):
    """The recipe with random weights (no download) and a test pipeline
    that keeps the image's size; a segmenter predicts on the whole image,
    as the exported graph does."""
    folder = 'segmentation' if recipe.split('_')[0] in (
        'fpn', 'upernet') else 'detection'
    cfg = Config.fromfile(osp.join(REPO, 'configs', folder, recipe))
    cfg.model.backbone.init_cfg = None
    keep = dict(type='Resize', scale_factor=1.0, keep_ratio=True)
    if folder == 'detection':
        cfg.test_pipeline = [dict(type='LoadImageFromFile'), keep,
                             dict(type='PackDetInputs')]
    else:
        cfg.test_pipeline = [dict(type='LoadImageFromFile'), keep,
                             dict(type='PackSegInputs')]
        cfg.model.test_cfg = dict(mode='whole')
    return cfg


def random_checkpoint(cfg, path):
    """A checkpoint of ``cfg``'s model: PyTorch's default init, and the
    backbone's norms and scales of order 1 (the heads' logits then spread
    over a unit or so: scores without ties). Detectors' scores are made
    sparse, as a trained one's: RetinaNet's prior is lowered, so that
    about 1 in 1000 (anchor, class) pairs passes the score threshold (mmdet
    keeps the top 1000 pairs per level, mmdeploy every class of the top
    1000 anchors: the same set only then); Mask R-CNN's classifier is
    scaled up, so that some classes pass it."""
    cfg.dump(path + '.py')
    model, _ = build(path + '.py')
    randomise(model.backbone)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == 'bbox_head.retina_cls.bias':
                p.fill_(-6.0)
            elif name == 'roi_head.bbox_head.fc_cls.weight':
                p.mul_(10.0)
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


def convert(tmp_path, recipe, deploy_name, **codebase):
    """Convert ``recipe`` with ``configs/deploy/deploy_name`` (``codebase``
    merged into its codebase_config); returns (the PyTorch model, the ONNX
    Runtime model, the task processor, the deploy config)."""
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import load_config
    model_cfg = model_config(recipe)
    deploy_cfg, = load_config(osp.join(DEPLOY, deploy_name))
    deploy_cfg.codebase_config.update(codebase)
    ckpt = random_checkpoint(model_cfg, str(tmp_path / 'random.pth'))
    image = np.random.default_rng(0).integers(
        0, 256, (*EXPORT, 3), dtype=np.uint8)
    start = time.perf_counter()
    torch2onnx(image, str(tmp_path), 'end2end.onnx', deploy_cfg, model_cfg,
               ckpt, 'cpu')
    REPORT[recipe] = [f'{deploy_name} converted in '
                      f'{time.perf_counter() - start:.1f} s']
    processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    ours = processor.build_pytorch_model(ckpt).eval()
    backend = processor.build_backend_model(
        [str(tmp_path / 'end2end.onnx')],
        processor.update_data_preprocessor)
    return ours, backend, processor, deploy_cfg


def inputs(processor, size, seed):
    image = np.random.default_rng(seed).integers(
        0, 256, (*size, 3), dtype=np.uint8)
    data, _ = processor.create_input(image, None)
    return data


def box_iou(a, b):
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (a[:, 2:] - a[:, :2]).prod(-1)
    barea = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area[:, None] + barea[None] - inter)


def match(ref, got):
    """Pairs (i, j) of PyTorch's detection i and ONNX Runtime's j: the same
    label, boxes of IoU > 0.999 and scores within 1e-4."""
    iou = box_iou(ref.bboxes, got.bboxes)
    same = (ref.labels[:, None] == got.labels[None]) & (iou > 0.999) & (
        (ref.scores[:, None] - got.scores[None]).abs() < 1e-4)
    pairs = []
    for i in range(len(ref)):
        j = torch.nonzero(same[i]).flatten()
        if len(j):
            pairs.append((i, int(j[0])))
    return pairs


def padded_meta(data, divisor=32):
    """``data`` with each image's ``img_shape`` the padded input's: the
    graph knows only the input tensor, so mmdeploy clips boxes to it, where
    mmdet clips them to the image."""
    data = copy.deepcopy(data)
    for sample in data['data_samples']:
        h, w = sample.img_shape
        sample.set_metainfo(dict(img_shape=(-(-h // divisor) * divisor,
                                            -(-w // divisor) * divisor)))
    return data


@pytest.mark.slow
def test_retinanet_converts_and_runs(tmp_path):
    """Converted, ONNX Runtime's RetinaNet gives 100 finite boxes at both
    sizes. Its detections are compared with PyTorch's given the graph's
    view (boxes clipped to the padded input) and the figures reported
    (pytest -s), not asserted: mmdeploy's candidates differ from mmdet's
    where many (anchor, class) pairs pass the score threshold, as with
    random weights (it keeps every class of the top 1000 anchors, mmdet
    the top 1000 pairs per level)."""
    recipe = 'retinanet_poolformer_s12.py'
    ours, backend, processor, _ = convert(
        tmp_path, recipe, 'detection_onnxruntime_dynamic.py')
    for seed, size in enumerate(SIZES):
        data = inputs(processor, size, seed + 1)
        with torch.no_grad():
            ref = ours.test_step(padded_meta(data))[0].pred_instances
            got = backend.test_step(data)[0].pred_instances
        assert len(got) == 100 and torch.isfinite(got.bboxes).all()
        pairs = match(ref, got)
        top = sum(i < 20 for i, _ in pairs)
        REPORT[recipe].append(f'{size[0]}x{size[1]}: {top} of the top 20 '
                              f'matched, {len(pairs)} of {len(ref)}')


@pytest.mark.slow
def test_mask_rcnn_converts_and_runs(tmp_path):
    """Converted, ONNX Runtime's Mask R-CNN gives boxes, scores and masks
    of the image's size. Its detections are not PyTorch's, even with no
    padding, for a cause not established (docs/deploy.md, Limits): the
    figures are reported (pytest -s), not asserted."""
    recipe = 'mask_rcnn_poolformer_s12.py'
    ours, backend, processor, _ = convert(
        tmp_path, recipe, 'instance-seg_onnxruntime_dynamic.py')
    for seed, size in enumerate(SIZES):
        data = inputs(processor, size, seed + 1)
        with torch.no_grad():
            ref = ours.test_step(data)[0].pred_instances
            got = backend.test_step(data)[0].pred_instances
        assert len(got) == 100 and got.masks.shape[1:] == size
        assert torch.isfinite(got.bboxes).all()
        REPORT[recipe].append(f'{size[0]}x{size[1]}: '
                              f'{len(match(ref, got))} of {len(ref)} '
                              'matched')


def seg_logits(ours, backend, data):
    """PyTorch's and ONNX Runtime's logits for ``data``."""
    with torch.no_grad():
        ref = ours.test_step(data)[0].seg_logits.data
        batch = ours.data_preprocessor(data, False)['inputs']
        got = backend.wrapper({'input': batch})['output'][0]
    return ref, got


@pytest.mark.slow
@pytest.mark.parametrize('recipe', [
    'fpn_poolformer_s12.py', 'upernet_convformer_s18.py',
    'upernet_caformer_s18.py'])
def test_segmenter(tmp_path, recipe):
    """The logits (the config's with_argmax=False), and the labels that
    mmdeploy's model gives with them."""
    ours, backend, processor, _ = convert(
        tmp_path, recipe, 'segmentation_onnxruntime_dynamic.py',
        with_argmax=False)
    for seed, size in enumerate(SIZES):
        data = inputs(processor, size, seed + 1)
        ref, got = seg_logits(ours, backend, data)
        assert got.shape == ref.shape, f'{size}: {got.shape} vs {ref.shape}'
        err = ((got - ref).abs().max() / ref.abs().max().clamp(min=1))
        REPORT[recipe].append(f'{size[0]}x{size[1]}: logits {err:.1e} of '
                              'their scale')
        assert err < 1e-4, f'{size}: logits off by {err:.2e} of their scale'
        with torch.no_grad():
            labels = backend.test_step(data)[0].pred_sem_seg.data
        assert labels.shape == (1, *size)
        agree = (labels[0] == ref.argmax(0)).float().mean()
        assert agree > 0.999, f'{size}: {agree:.4f} of the labels agree'
