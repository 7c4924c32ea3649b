"""What users of mmdet and mmseg do at test time, on our configs: ``tools/
test.py --tta`` for the demo's detector and segmentor, and mmdet's and
mmseg's own analysis tools (the ones docs/tools.md promises) on their
checkpoints, logs and predictions; those that fail upstream whatever the
config fail as docs/tools.md says."""
import glob
import json
import os
import os.path as osp
import pickle
import runpy
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from helpers.checkout import log, run, tool
from helpers.configs import shapes_config, trained

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def det(tiny_data, tmp_path_factory):
    """The demo's RetinaNet trained 1 epoch (4 iterations), keeping every
    box at test time (a model this young scores below 0.05)."""
    return trained(tmp_path_factory, 'det', tiny_data,
                   model=dict(test_cfg=dict(score_thr=0.0)),
                   train_cfg=dict(max_epochs=1, val_interval=9))


@pytest.fixture(scope='module')
def seg(tiny_data, tmp_path_factory):
    """The demo's Semantic FPN trained 4 iterations."""
    return trained(tmp_path_factory, 'seg', tiny_data)


def evaluate(task, cfg, ckpt, out, *args):
    """tools/test.py of ``cfg`` and ``ckpt`` with ``args`` into the folder
    ``out``: its metrics, predictions (``out/preds.pkl`` for the task
    'det', label images in ``out/pred`` for 'seg') and logs."""
    pred = 'preds.pkl' if task == 'det' else 'pred'
    log(tool('test.py', cfg, ckpt, '--work-dir', out, '--out', out / pred,
             *args), out.parent)
    return json.loads((out / 'test_metrics.json').read_text())


@pytest.fixture(scope='module')
def det_plain(det):
    """The folder of det's plain tools/test.py run."""
    cfg, work = det
    evaluate('det', cfg, work / 'epoch_1.pth', work.parent / 'plain')
    return work.parent / 'plain'


@pytest.fixture(scope='module')
def seg_plain(seg):
    """The folder of seg's plain tools/test.py run."""
    cfg, work = seg
    evaluate('seg', cfg, work / 'iter_4.pth', work.parent / 'plain')
    return work.parent / 'plain'


def boxes(pkl):
    """Per image: its (label, rounded box) set, from test.py --out."""
    with open(pkl, 'rb') as f:  # our own test output
        preds = pickle.load(f)
    return [{(int(l), *np.round(b.numpy(), 2).tolist()) for l, b in zip(
        p['pred_instances']['labels'], p['pred_instances']['bboxes'])}
        for p in preds]


def labels(folder):
    """The label images test.py --out wrote, in order."""
    return [np.array(Image.open(folder / f))
            for f in sorted(os.listdir(folder))]


def test_detector_tta(det, det_plain, tiny_data, tmp_path):
    """--tta merges 3 scales x 2 flips: other boxes than the plain test's;
    a TTA of the test scale alone unflipped gives the plain test's boxes
    (so the wrapped model is the checkpoint's)."""
    cfg, work = det
    ckpt = work / 'epoch_1.pth'
    identity = shapes_config(
        tmp_path / 'identity.py', 'det', tiny_data,
        model=dict(test_cfg=dict(score_thr=0.0)),
        tta_pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='TestTimeAug', transforms=[
                [dict(type='Resize', scale=(128, 128), keep_ratio=True)],
                [dict(type='RandomFlip', prob=0.)],
                [dict(type='LoadAnnotations', with_bbox=True)],
                [dict(type='PackDetInputs', meta_keys=(
                    'img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'flip', 'flip_direction'))]])])
    for name, config in (('tta', cfg), ('identity', identity)):
        metrics = evaluate('det', config, ckpt, tmp_path / name, '--tta')
        assert 0.0 <= metrics['coco/bbox_mAP_50'] <= 1.0
    plain = boxes(det_plain / 'preds.pkl')
    assert len(plain) == 4 and all(plain)
    assert boxes(tmp_path / 'identity' / 'preds.pkl') == plain
    assert boxes(tmp_path / 'tta' / 'preds.pkl') != plain


def test_segmentor_tta(seg, seg_plain, tiny_data, tmp_path):
    """--tta averages 6 ratios x 2 flips: other label maps than the plain
    test's; the ratio 1 alone unflipped gives the plain test's."""
    cfg, work = seg
    ckpt = work / 'iter_4.pth'
    identity = shapes_config(
        tmp_path / 'identity.py', 'seg', tiny_data,
        tta_pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='TestTimeAug', transforms=[
                [dict(type='Resize', scale_factor=1.0, keep_ratio=True)],
                [dict(type='RandomFlip', prob=0., direction='horizontal')],
                [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]
            ])])
    for name, config in (('tta', cfg), ('identity', identity)):
        metrics = evaluate('seg', config, ckpt, tmp_path / name, '--tta')
        assert 0.0 <= metrics['mIoU'] <= 100.0
    plain = labels(seg_plain / 'pred')
    assert len(plain) == 4
    identity = labels(tmp_path / 'identity' / 'pred')
    assert all((a == b).all() for a, b in zip(identity, plain))
    tta = labels(tmp_path / 'tta' / 'pred')
    assert any((a != b).any() for a, b in zip(tta, plain))


def test_mask_rcnn_tta_says_why_in_one_line(tiny_data, tmp_path):
    cfg = shapes_config(tmp_path / 'cfg.py', 'det', tiny_data,
                        model_from='mask_rcnn_poolformer_s12.py')
    proc = run(tool('test.py', cfg, tmp_path / 'none.pth', '--tta'),
               tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        '--tta: mmdet 3.3 has no test-time augmentation for instance '
        'segmentation (its DetTTAModel merges boxes, not masks); test this '
        'model without --tta')
    assert 'Traceback' not in proc.stderr



def test_image_demo_lowers_the_models_own_threshold(det, tiny_data,
                                                    tmp_path):
    """RetinaNet drops boxes under its test_cfg.score_thr (0.05) before
    --score-thr applies: a lower --score-thr lowers it, and says so."""
    _, work = det
    cfg = shapes_config(tmp_path / 'cfg.py', 'det', tiny_data)
    img = osp.join(tiny_data['coco'], 'val2017', 'validation_00001.jpg')
    out = log(tool('image_demo.py', img, cfg, '--weights',
                   work / 'epoch_1.pth', '--out', tmp_path / 'pred.png',
                   '--score-thr', '0'), tmp_path)
    assert ("the model's own test_cfg.score_thr 0.05 lowered to "
            '--score-thr 0.0') in out
    (count, ) = [int(line.split()[0]) for line in out.splitlines()
                 if line.endswith('detections >= 0.0:')]
    assert count == 100  # the head's max_per_img: nothing dropped


# mmdet's and mmseg's own tools. They run in this process (runpy, as
# `python TOOL.py` would), which saves a child's imports each; a tool that
# reads a `mmpoolformer::` config before importing mmpoolformer runs in a
# child.
def upstream(package, path):
    """``package``'s shipped ``tools/PATH``."""
    module = __import__(package)
    return osp.join(osp.dirname(module.__file__), '.mim', 'tools', path)


def call(package, path, *args):
    """Run ``package``'s ``tools/PATH`` with ``args`` as ``__main__`` in
    this process."""
    argv = sys.argv
    sys.argv = [upstream(package, path), *map(str, args)]
    try:
        runpy.run_path(sys.argv[0], run_name='__main__')
    finally:
        sys.argv = argv


@pytest.fixture
def here(tmp_path, monkeypatch):
    """The tools write work_dirs/ where they run: in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    return tmp_path


def test_mmdet_get_flops(det, here, capsys):
    call('mmdet', 'analysis_tools/get_flops.py', det[0], '--num-images', 1)
    out = capsys.readouterr().out
    assert 'Flops:' in out and 'Params:' in out


def test_mmseg_get_flops_fails_upstream(seg, here):
    """mmseg 1.2.2's get_flops.py passes mmengine both an input shape and
    inputs, for every config (mmsegmentation#3241): docs/tools.md."""
    with pytest.raises(ValueError, match='cannot be both set'):
        call('mmseg', 'analysis_tools/get_flops.py', seg[0])


def test_mmseg_benchmark_on_cpu(seg, tiny_data, here, capsys):
    """mmseg's benchmark.py runs on the CPU when there is no GPU. It times
    200 images for its overall figure; here 12 (the 4 held-out images 3
    times) give its progress line at image 10."""
    cfg, work = seg
    dataset = Config.fromfile(cfg).test_dataloader.dataset.to_dict()
    loader = dict(dataset=dict(_delete_=True, type='RepeatDataset',
                               times=3, dataset=dataset))
    bench = shapes_config(here / 'bench.py', 'seg', tiny_data,
                          test_dataloader=loader)
    call('mmseg', 'analysis_tools/benchmark.py', bench, work / 'iter_4.pth',
         '--log-interval', 10, '--work-dir', here)
    assert 'Done image [10 / 200], fps:' in capsys.readouterr().out
    assert glob.glob(str(here / 'fps_*.json'))


@pytest.mark.skipif(torch.cuda.is_available(), reason='no-GPU behaviour')
def test_mmdet_benchmark_inference_needs_a_gpu(det, here):
    """mmdet's --task inference moves the model to CUDA unconditionally
    (mmdetection#11903): docs/tools.md. Its other tasks run on the CPU
    (test_train_test.py)."""
    cfg, work = det
    with pytest.raises((RuntimeError, AssertionError),
                       match='NVIDIA driver|CUDA|cuda'):
        call('mmdet', 'analysis_tools/benchmark.py', cfg, '--checkpoint',
             work / 'epoch_1.pth', '--task', 'inference', '--max-iter', 2,
             '--num-warmup', 1, '--work-dir', here)


def test_browse_dataset(det, seg, here):
    """mmseg's fails under OpenCV 5 whatever the config: it draws class
    names with cv2 into a non-contiguous image, which OpenCV 4 copied and
    OpenCV 5 refuses (docs/tools.md)."""
    import cv2
    call('mmdet', 'analysis_tools/browse_dataset.py', det[0],
         '--output-dir', here / 'det', '--not-show')
    assert len(os.listdir(here / 'det')) == 8  # the training images
    args = (seg[0], '--output-dir', here / 'seg', '--not-show')
    if int(cv2.__version__.split('.')[0]) >= 5:
        with pytest.raises(cv2.error, match='incompatible with cv::Mat'):
            call('mmseg', 'analysis_tools/browse_dataset.py', *args)
    else:
        call('mmseg', 'analysis_tools/browse_dataset.py', *args)
        assert len(os.listdir(here / 'seg')) == 8


def scalars(work):
    """The json log mmengine's local visualizer backend wrote in ``work``."""
    (path, ) = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))
    return path


def test_analyze_logs(det, seg, here, capsys):
    """Both need seaborn (requirements.txt)."""
    det_log, seg_log = scalars(det[1]), scalars(seg[1])
    call('mmdet', 'analysis_tools/analyze_logs.py', 'plot_curve', det_log,
         '--keys', 'loss', '--out', here / 'det.png')
    call('mmdet', 'analysis_tools/analyze_logs.py', 'cal_train_time',
         det_log, '--include-outliers')
    call('mmseg', 'analysis_tools/analyze_logs.py', seg_log, '--keys',
         'loss', '--out', here / 'seg.png')
    assert 'average iter time' in capsys.readouterr().out
    for name in ('det.png', 'seg.png'):
        with Image.open(here / name) as im:
            assert im.format == 'PNG'


def test_mmdet_confusion_matrix(det, det_plain, here):
    call('mmdet', 'analysis_tools/confusion_matrix.py', det[0],
         det_plain / 'preds.pkl', here)
    with Image.open(here / 'confusion_matrix.png') as im:
        assert im.format == 'PNG'


def test_mmseg_confusion_matrix_fails_upstream(seg, seg_plain, here):
    """mmseg's confusion_matrix.py reads the classes from the dataset class
    (the demo names them in its config) and reduces reduce_zero_label's
    labels twice (mmsegmentation#1687): docs/tools.md."""
    with pytest.raises(KeyError, match='classes'):
        call('mmseg', 'analysis_tools/confusion_matrix.py', seg[0],
             seg_plain / 'pred', here)


def test_print_config(det, seg, here, capsys):
    call('mmdet', 'misc/print_config.py', det[0])
    call('mmseg', 'misc/print_config.py', seg[0])
    out = capsys.readouterr().out
    assert out.count("type='PoolFormer'") == 2


def test_a_tool_reads_mmpoolformer_configs_when_run_through_the_module(
        here):
    """mmdet's print_config.py reads the config before anything imports
    mmpoolformer: mmengine refuses the prefix. Through ``python -m
    mmpoolformer`` the prefix resolves."""
    (here / 'user.py').write_text(
        "_base_ = 'mmpoolformer::detection/retinanet_poolformer_s12.py'\n")
    script = upstream('mmdet', 'misc/print_config.py')
    alone = run([sys.executable, script, 'user.py'], here, check=False)
    assert alone.returncode != 0
    assert 'mmengine does not support to load mmpoolformer config' in \
        alone.stderr
    out = log([sys.executable, '-m', 'mmpoolformer', script, 'user.py'],
              here)
    assert "type='PoolFormer'" in out
    bad = run([sys.executable, '-m', 'mmpoolformer', 'user'], here,
              check=False)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == (
        'usage: python -m mmpoolformer TOOL.py [ARGS...]: TOOL.py must be a '
        "Python file, got 'user'")
