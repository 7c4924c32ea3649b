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


def model_config(recipe, whole=True):
    """The recipe with random weights (no download) and a test pipeline
    that keeps the image's size; a segmenter predicts on the whole image,
    as the exported graph does (``whole``; else its test_cfg is the
    recipe's)."""
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
        if whole:
            cfg.model.test_cfg = dict(mode='whole')
    return cfg


def random_checkpoint(cfg, path):
    """A checkpoint of ``cfg``'s model: PyTorch's default init (seeded),
    and the backbone's norms and scales of order 1 (the heads' logits then
    spread over a unit or so: scores without ties). Detectors' heads are
    made trained-like: RetinaNet's scores sparse (a few hundred (anchor,
    class) pairs pass the score threshold, as a trained one's; where
    thousands do, mmdeploy's candidates for NMS are not mmdet's) and its
    box deltas small; Mask R-CNN's classifier scaled up, so that some
    classes pass the threshold, and its RPN's deltas small (large ones clip
    hundreds of proposals to the image's corner, boxes that overlap by
    about NMS's threshold and score within 1e-4 of each other: which of
    them NMS keeps then turns on rounding)."""
    cfg.dump(path + '.py')
    torch.manual_seed(0)
    model, _ = build(path + '.py')
    randomise(model.backbone)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == 'bbox_head.retina_cls.bias':
                p.fill_(-6.0)
            elif name == 'bbox_head.retina_cls.weight':
                p.mul_(0.55)
            elif name == 'bbox_head.retina_reg.weight':
                p.mul_(0.3)
            elif name == 'roi_head.bbox_head.fc_cls.weight':
                p.mul_(10.0)
            elif name == 'rpn_head.rpn_reg.weight':
                p.mul_(0.3)
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


def match(ref, got, tol):
    """Pairs (i, j), one to one, of PyTorch's detection i and ONNX
    Runtime's j: the same label, scores within 1e-4 and corners within
    ``tol`` pixels (not IoU: boxes clipped to a line have none)."""
    same = (ref.labels[:, None] == got.labels[None]) & (
        (ref.scores[:, None] - got.scores[None]).abs() < 1e-4) & (
        (ref.bboxes[:, None] - got.bboxes[None]).abs().amax(-1) <= tol)
    pairs, used = [], set()
    for i in range(len(ref)):
        j = [j for j in torch.nonzero(same[i]).flatten().tolist()
             if j not in used]
        if j:
            pairs.append((i, j[0]))
            used.add(j[0])
    return pairs


def padded_shape(data, divisor=32):
    """(H, W) of the input tensor the preprocessor makes of ``data``: each
    side the largest image's, padded to a multiple of ``divisor``."""
    return tuple(-(-max(side) // divisor) * divisor for side in zip(
        *(sample.img_shape for sample in data['data_samples'])))


def padded_meta(data):
    """``data`` with each image's ``img_shape`` the padded input's: the
    graph knows only the input tensor, so mmdeploy clips boxes to it, where
    mmdet clips them to the image."""
    shape = padded_shape(data)
    data = copy.deepcopy(data)
    for sample in data['data_samples']:
        sample.set_metainfo(dict(img_shape=shape))
    return data


class Heads(torch.nn.Module):
    """A detector up to its heads' outputs, flat: RetinaNet's class and box
    maps per level; Mask R-CNN's RPN maps, its box head's class scores and
    deltas for ``rois`` and its mask head's logits for ``mask_rois``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, img, rois=None, mask_rois=None):
        model = self.model
        x = model.extract_feat(img)
        if rois is None:
            cls, reg = model.bbox_head(x)
            return (*cls, *reg)
        cls, reg = model.rpn_head(x)
        box = model.roi_head._bbox_forward(x, rois)
        mask = model.roi_head._mask_forward(x, mask_rois)
        return (*cls, *reg, box['cls_score'], box['bbox_pred'],
                mask['mask_preds'])


def proposals(model, img):
    """mmdet's RPN proposals for ``img`` (PyTorch) as RoIs (0, box), and
    the 100 smallest of them (the mask head's cost is per RoI)."""
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=tuple(img.shape[2:])))
    with torch.no_grad():
        boxes = model.rpn_head.predict(model.extract_feat(img), [sample],
                                       rescale=False)[0].bboxes
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], 1)
    side = (boxes[:, 2:] - boxes[:, :2]).min(1).values
    return rois, rois[side.argsort()[:100]]


def check_heads(tmp_path, recipe, ours, processor, deploy_cfg):
    """:class:`Heads` exported by mmdeploy (its rewriters, the deploy
    config's opset) at ``EXPORT``, height and width dynamic, gives
    PyTorch's outputs on the images of ``SIZES`` as they are (sides 1, 2 or
    3 mod 4: the backbone pads in the graph), Mask R-CNN's RoI heads on
    mmdet's proposals (the mask head on the 100 smallest), among them RoIs
    under a pixel of their level's map: ONNX's RoiAlign before opset 16
    makes them a pixel wide (mmcv's aligned RoIAlign does not), mmdeploy's
    opset 16 form is exact."""
    import onnxruntime as ort
    from mmdeploy.apis.onnx import export
    heads = Heads(ours).eval()
    two_stage = hasattr(ours, 'roi_head')

    def feed(img):
        return (img, *proposals(ours, img)) if two_stage else (img, )

    names = ['img', 'rois', 'mask_rois'][:1 + 2 * two_stage]
    export(heads, feed(torch.randn(1, 3, *EXPORT)), str(tmp_path / 'heads'),
           backend='onnxruntime', context_info=dict(deploy_cfg=deploy_cfg),
           input_names=names,
           opset_version=deploy_cfg.onnx_config.opset_version,
           dynamic_axes=dict(img={2: 'height', 3: 'width'},
                             rois={0: 'num_rois'}, mask_rois={0: 'masks'}))
    session = ort.InferenceSession(str(tmp_path / 'heads.onnx'),
                                   providers=['CPUExecutionProvider'])
    for seed, size in enumerate(SIZES):
        data = inputs(processor, size, seed + 1)
        img = ours.data_preprocessor(data, False)['inputs']
        args = feed(img[..., :size[0], :size[1]])
        with torch.no_grad():
            ref = heads(*args)
        got = session.run(None, {n: a.numpy() for n, a in zip(names, args)})
        err = []
        for i, (g, r) in enumerate(zip(got, ref)):
            assert g.shape == r.shape, f'{size}: output {i}: {g.shape} ' \
                f'vs {tuple(r.shape)}'
            err.append(float((torch.from_numpy(g) - r).abs().max() /
                             r.abs().max()))
        line = f'{size[0]}x{size[1]}: maps {max(err[:10]):.1e} of their scale'
        if two_stage:
            rois = args[1]
            side = (rois[:, 3:] - rois[:, 1:3]).min(1).values
            stride = 4 * 2**ours.roi_head.bbox_roi_extractor.map_roi_levels(
                rois, 4)
            small = int((side < stride).sum())
            line += (f', RoI heads {max(err[10:]):.1e} ({len(rois)} RoIs, '
                     f'{small} under a pixel of their level)')
        REPORT[recipe].append(line)
        assert max(err) < 1e-4, line


def detections(out, image=0):
    """A graph's (dets, labels[, masks]) of one image of the batch as
    InstanceData, the rows of score 0 (padding) left out."""
    from mmengine.structures import InstanceData
    dets, labels = out[0][image], out[1][image]
    keep = dets[:, 4] > 0
    fields = dict(bboxes=dets[keep, :4], scores=dets[keep, 4],
                  labels=labels[keep])
    if len(out) > 2:
        fields['masks'] = out[2][image][keep]
    return InstanceData(**fields)


def end_to_end(ours, backend, deploy_cfg, data):
    """The same rewritten model's detections in PyTorch (mmdeploy's forward
    and post-processing in its RewriterContext), and ONNX Runtime's, for
    ``data``: a list of each per image."""
    from mmdeploy.core import RewriterContext
    batch = ours.data_preprocessor(copy.deepcopy(data), False)
    with torch.no_grad():
        got = backend.wrapper({'input': batch['inputs']})
        with RewriterContext(cfg=deploy_cfg, backend='onnxruntime',
                             opset=deploy_cfg.onnx_config.opset_version):
            ref = ours.forward(batch['inputs'], batch['data_samples'],
                               mode='predict')
    got = [got[n] for n in deploy_cfg.onnx_config.output_names]
    images = range(len(batch['inputs']))
    return ([detections(ref, i) for i in images],
            [detections(got, i) for i in images])


def mmdet_detections(model, data):
    """mmdet's own detections in PyTorch, a list per image, boxes clipped to
    the padded input (as the graph's) and not rescaled."""
    batch = model.data_preprocessor(padded_meta(data), False)
    samples = batch['data_samples']
    with torch.no_grad():
        x = model.extract_feat(batch['inputs'])
        if not hasattr(model, 'roi_head'):
            return model.bbox_head.predict(x, samples, rescale=False)
        rpn = model.rpn_head.predict(x, samples, rescale=False)
        return model.roi_head.predict_bbox(
            x, [s.metainfo for s in samples], rpn, model.roi_head.test_cfg,
            rescale=False)


def check_detections(recipe, ours, backend, processor, deploy_cfg):
    """ONNX Runtime's detections are the rewritten model's in PyTorch, one
    to one (masks within 1e-4), at both sizes; returns, per size, the
    rewritten model's detections, mmdet's own and the tolerance on
    corners."""
    out = []
    for seed, size in enumerate(SIZES):
        data = inputs(processor, size, seed + 1)
        (ref, ), (got, ) = end_to_end(ours, backend, deploy_cfg, data)
        tol = 1e-4 * max(data['inputs'][0].shape[1:])
        pairs = match(ref, got, tol)
        line = (f'{size[0]}x{size[1]}: {len(pairs)} of {len(ref)} '
                "detections are the rewritten model's")
        if 'masks' in ref:
            err = max(float((ref.masks[i] - got.masks[j]).abs().max())
                      for i, j in pairs)
            line += f', masks within {err:.1e}'
        mmdet, = mmdet_detections(ours, data)
        flat = int((ref.bboxes[:, 2:] <= ref.bboxes[:, :2]).any(1).sum())
        REPORT[recipe].append(
            line + f"; mmdet's: {len(match(mmdet, ref, tol))} of "
            f'{len(mmdet)} ({flat} of zero area in the rewritten model)')
        assert len(ref) > 10 and len(got) == len(ref), line
        assert len(pairs) == len(ref), line
        if 'masks' in ref:
            assert err < 1e-4, line
        out.append((ref, mmdet, tol))
    return out


def check_batch(recipe, ours, backend, processor, deploy_cfg):
    """The images of both :data:`SIZES` in one batch (padded to the larger
    one's multiple of 32): per image, ONNX Runtime's detections are the
    rewritten model's, and those mmdet's own on the same batch, boxes
    clipped to the batch's padded input as the graph's are."""
    parts = [inputs(processor, size, seed + 1)
             for seed, size in enumerate(SIZES)]
    data = {key: sum((part[key] for part in parts), [])
            for key in ('inputs', 'data_samples')}
    refs, gots = end_to_end(ours, backend, deploy_cfg, data)
    shape = padded_shape(data)
    tol = 1e-4 * max(shape)
    counts = [(len(ref), len(got), len(mmdet), len(match(ref, got, tol)),
               len(match(mmdet, ref, tol)))
              for ref, got, mmdet in zip(refs, gots,
                                         mmdet_detections(ours, data))]
    line = f'batch of {len(refs)} at {shape[0]}x{shape[1]}:' + ''.join(
        f" {same} of {n} the rewritten model's, {mmdet} of {m} mmdet's;"
        for n, _, m, same, mmdet in counts)
    REPORT[recipe].append(line)
    for n, got, m, same, mmdet in counts:
        assert n > 10 and got == n == m, line
        assert same == n and mmdet == n, line


def check_detector(tmp_path, recipe, deploy_name):
    """Convert ``recipe``; check its heads' outputs and its detections at
    both :data:`SIZES`, one image and both in a batch (ONNX Runtime = the
    rewritten model = mmdet); return mmdeploy's model's predictions at the
    first size."""
    ours, backend, processor, deploy_cfg = convert(tmp_path, recipe,
                                                   deploy_name)
    check_heads(tmp_path, recipe, ours, processor, deploy_cfg)
    for ref, mmdet, tol in check_detections(recipe, ours, backend, processor,
                                            deploy_cfg):
        assert len(mmdet) == len(ref)
        assert len(match(mmdet, ref, tol)) == len(ref)
    check_batch(recipe, ours, backend, processor, deploy_cfg)
    data = inputs(processor, SIZES[0], 1)
    with torch.no_grad():
        return backend.test_step(data)[0].pred_instances


@pytest.mark.slow
def test_retinanet(tmp_path):
    """RetinaNet converts with the detection config and ONNX Runtime agrees
    with PyTorch at two sizes: the network's outputs, and the detections
    (mmdeploy's post-processing in the graph) with the rewritten model's;
    with a trained-like head's sparse scores, those are mmdet's own (boxes
    of zero size dropped as mmdet does, mmpoolformer.deploy)."""
    got = check_detector(tmp_path, 'retinanet_poolformer_s12.py',
                         'detection_onnxruntime_dynamic.py')
    assert torch.isfinite(got.bboxes).all()


@pytest.mark.slow
def test_mask_rcnn(tmp_path):
    """Mask R-CNN converts with the instance-seg config and ONNX Runtime
    agrees with PyTorch at two sizes: the network's outputs (the RoI heads
    on the same RoIs), the detections and 28x28 masks with the rewritten
    model's, and those with mmdet's own (the RPN's post-processing is
    mmdet's, mmpoolformer.deploy). mmdeploy's model pastes the masks into
    an image of the input's size."""
    got = check_detector(tmp_path, 'mask_rcnn_poolformer_s12.py',
                         'instance-seg_onnxruntime_dynamic.py')
    assert got.masks.shape[1:] == SIZES[0]
    assert torch.isfinite(got.bboxes).all()


def check_segmenter(tmp_path, recipe):
    """Convert ``recipe`` with the segmentation config (logits out) and
    check ONNX Runtime's logits against PyTorch's at both :data:`SIZES`;
    yield each size, its data, PyTorch's logits and mmdeploy's model."""
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
        yield size, data, ref, backend


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
    for size, data, ref, backend in check_segmenter(tmp_path, recipe):
        with torch.no_grad():
            labels = backend.test_step(data)[0].pred_sem_seg.data
        assert labels.shape == (1, *size)
        agree = (labels[0] == ref.argmax(0)).float().mean()
        assert agree > 0.999, f'{size}: {agree:.4f} of the labels agree'
