"""tools/train.py -> tools/test.py, dist_train.sh on 2 CPU processes, and
mmdet's / mmseg's own inference APIs on the checkpoints training wrote."""
import json
import math
import os
import os.path as osp
import re
import sys

import pytest
import torch
from mmengine.config import Config

from helpers.checkout import REPO, log, run, tool
from helpers.configs import shapes_config, trained
from mmpoolformer import safeload
from mmpoolformer.datasets import SEG_CLASSES

pytestmark = pytest.mark.slow


def rank_reports(out_dir):
    """Config changes: each rank writes what it trained to ``out_dir``."""
    return dict(custom_imports=dict(imports=['mmpoolformer',
                                             'helpers.rank_hook'],
                                    allow_failed_imports=False),
                custom_hooks=[dict(type='RankReportHook',
                                   out_dir=str(out_dir))])


@pytest.fixture(scope='module')
def det_run(tiny_data, tmp_path_factory):
    """Mask R-CNN S12 trained 2 epochs by tools/train.py."""
    return trained(
        tmp_path_factory, 'det', tiny_data,
        model_from='mask_rcnn_poolformer_s12.py',
        model=dict(roi_head=dict(bbox_head=dict(num_classes=3),
                                 mask_head=dict(num_classes=3)),
                   test_cfg=dict(rcnn=dict(score_thr=0.0))))


def test_det_train_then_test(det_run, tmp_path):
    cfg, work = det_run
    ckpt = work / 'epoch_2.pth'
    assert ckpt.exists() and (work / 'last_checkpoint').exists()
    out = log(tool('test.py', cfg, ckpt, '--work-dir', tmp_path, '--out',
                   tmp_path / 'preds.pkl', '--show-dir', tmp_path / 'vis'),
              tmp_path)
    assert f'Load checkpoint from {ckpt}' in out
    metrics = json.loads((tmp_path / 'test_metrics.json').read_text())
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert 0.0 <= metrics[key] <= 1.0
    assert (tmp_path / 'preds.pkl').stat().st_size > 0
    assert len(os.listdir(tmp_path / 'vis')) == 4


def test_det_inference_apis(det_run, tiny_data, tmp_path):
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    cfg, work = det_run
    ckpt = str(work / 'epoch_2.pth')
    img = osp.join(tiny_data['coco'], 'val2017', 'validation_00000.jpg')
    model = init_detector(cfg, ckpt, device='cpu')
    assert model.dataset_meta['classes'] == ('circle', 'square', 'triangle')
    result = inference_detector(model, img)
    assert result.pred_instances.bboxes.shape[1] == 4
    inferencer = DetInferencer(model=cfg, weights=ckpt, device='cpu')
    out = inferencer(img, out_dir=str(tmp_path), no_save_pred=False)
    assert len(out['predictions'][0]['bboxes']) > 0
    assert os.listdir(tmp_path / 'vis')


def test_image_demo_script(det_run, tiny_data, tmp_path):
    cfg, work = det_run
    img = osp.join(tiny_data['coco'], 'val2017', 'validation_00001.jpg')
    out_file = tmp_path / 'pred.png'
    out = log(tool('image_demo.py', img, cfg, '--weights',
                   work / 'epoch_2.pth', '--out', out_file, '--score-thr',
                   '0'), tmp_path)
    assert out_file.stat().st_size > 0 and 'saved' in out


def test_caformer_detector_trains(tiny_data, tmp_path):
    """RetinaNet + CAFormer-S18 (attention in stages 2-3) through
    tools/train.py: one epoch and a validation."""
    cfg = shapes_config(
        tmp_path / 'cfg.py', 'det', tiny_data,
        model_from='retinanet_caformer_s18.py',
        model=dict(bbox_head=dict(num_classes=3),
                   test_cfg=dict(score_thr=0.0)),
        train_cfg=dict(max_epochs=1, val_interval=1))
    work = tmp_path / 'work'
    out = log(tool('train.py', cfg, '--work-dir', work), tmp_path)
    losses = [float(v) for v in re.findall(r' loss: (\S+)', out)]
    assert losses and all(math.isfinite(v) for v in losses)
    assert 'coco/bbox_mAP:' in out
    state = safeload.load(work / 'epoch_1.pth')['state_dict']
    assert 'backbone.stages.3.blocks.2.token_mixer.qkv.weight' in state


def check_ranks(report_dir):
    reports = [json.loads((report_dir / f'rank{r}.json').read_text())
               for r in (0, 1)]
    for r, rep in enumerate(reports):
        assert rep['rank'] == r and rep['world_size'] == 2
        assert rep['wrapper'] == 'MMDistributedDataParallel'
        assert rep['iters'] > 0
        assert rep['checksum'] != rep['initial']  # it trained
    # identical weights after different data: gradients were synchronised
    assert reports[0]['checksum'] == reports[1]['checksum']


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU data-parallel')
def test_dist_train_two_cpu_processes_det(tiny_data, tmp_path):
    cfg = shapes_config(
        tmp_path / 'cfg.py', 'det', tiny_data,
        train_cfg=dict(max_epochs=1, val_interval=9), param_scheduler=[],
        **rank_reports(tmp_path))
    run(tool('dist_train.sh', cfg, '2', '--work-dir', tmp_path / 'work'),
        tmp_path, env=dict(PORT='29641'))
    check_ranks(tmp_path)


@pytest.fixture(scope='module')
def seg_run(tiny_data, tmp_path_factory):
    """The demo's Semantic FPN S12 trained 4 iterations by tools/train.py."""
    return trained(tmp_path_factory, 'seg', tiny_data)


def test_seg_train_then_test(seg_run, tmp_path):
    cfg, work = seg_run
    ckpt = work / 'iter_4.pth'
    out = log(tool('test.py', cfg, ckpt, '--work-dir', tmp_path, '--out',
                   tmp_path / 'pred', '--show-dir', tmp_path / 'vis'),
              tmp_path)
    assert f'Load checkpoint from {ckpt}' in out
    metrics = json.loads((tmp_path / 'test_metrics.json').read_text())
    assert 0.0 <= metrics['mIoU'] <= 100.0
    assert len(os.listdir(tmp_path / 'pred')) == 4
    drawn = [f for _, _, files in os.walk(tmp_path / 'vis') for f in files
             if f.endswith('.png')]
    assert len(drawn) == 4


def test_seg_inference_apis(seg_run, tiny_data, tmp_path):
    import numpy as np
    from mmseg.apis import (MMSegInferencer, inference_model, init_model,
                            show_result_pyplot)
    cfg, work = seg_run
    ckpt = str(work / 'iter_4.pth')
    img = osp.join(tiny_data['ade'], 'images', 'validation',
                   'validation_00000.jpg')
    model = init_model(cfg, ckpt, device='cpu')
    result = inference_model(model, img)
    assert result.pred_sem_seg.shape == (96, 96)
    odd = np.random.randint(0, 255, (77, 133, 3), dtype=np.uint8)
    assert inference_model(model, odd).pred_sem_seg.shape == (77, 133)
    vis = show_result_pyplot(model, img, result, show=False,
                             out_file=str(tmp_path / 'vis.png'))
    assert vis.shape == (96, 96, 3) and (tmp_path / 'vis.png').exists()
    inferencer = MMSegInferencer(model=cfg, weights=ckpt, device='cpu')
    pred = inferencer(img, return_datasamples=True)
    assert pred.pred_sem_seg.shape == (96, 96)
    # the classes the shapes config trained with, from the checkpoint
    assert tuple(model.dataset_meta['classes']) == SEG_CLASSES
    assert tuple(inferencer.model.dataset_meta['classes']) == SEG_CLASSES


def test_seg_checkpoint_without_classes_falls_back_to_ade20k(tiny_data,
                                                             tmp_path):
    """A 150-class checkpoint without class metadata: init_model names
    ADE20K's classes (its rule: the dataset with as many classes), and the
    inferencer, which by itself falls back to Cityscapes, does the same
    (compat.py)."""
    from mmseg.apis import MMSegInferencer, init_model
    from mmseg.registry import MODELS
    from mmseg.utils import get_classes, get_palette
    cfg = shapes_config(tmp_path / 'cfg.py', 'seg', tiny_data,
                        model=dict(decode_head=dict(num_classes=150)))
    model = MODELS.build(Config.fromfile(cfg).model)
    bare = str(tmp_path / 'bare.pth')
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), bare)
    ade = (tuple(get_classes('ade')), get_palette('ade'))
    model = init_model(cfg, bare, device='cpu')
    assert (tuple(model.dataset_meta['classes']),
            model.dataset_meta['palette']) == ade
    inferencer = MMSegInferencer(model=cfg, weights=bare, device='cpu')
    meta = inferencer.model.dataset_meta
    assert (tuple(meta['classes']), meta['palette']) == ade


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU data-parallel')
def test_dist_train_two_cpu_processes_seg(tiny_data, tmp_path):
    """The head's SyncBN falls back to per-process BN without CUDA."""
    cfg = shapes_config(tmp_path / 'cfg.py', 'seg', tiny_data,
                        train_cfg=dict(max_iters=2, val_interval=9),
                        **rank_reports(tmp_path))
    out = log(tool('dist_train.sh', cfg, '2', '--work-dir',
                   tmp_path / 'work'), tmp_path, env=dict(PORT='29642'))
    assert 'SyncBN layers replaced by BN' in out
    check_ranks(tmp_path)


def test_export_onnx_segmentor_and_detector(seg_run, det_run, tmp_path):
    """A Semantic FPN's logits and a Mask R-CNN's features and RPN maps
    through the TorchScript exporter, checked by onnxruntime."""
    for (cfg, work), ckpt in ((seg_run, 'iter_4.pth'),
                              (det_run, 'epoch_2.pth')):
        out = tmp_path / 'model.onnx'
        printed = log(tool('export_onnx.py', cfg, work / ckpt, out,
                           '--shape', '64', '96'), tmp_path)
        assert out.stat().st_size > 0
        diffs = [float(line.rsplit(' ', 1)[1])
                 for line in printed.splitlines() if line.startswith('  out')]
        assert diffs and max(diffs) <= 1e-4, printed


def test_get_flops_whole_model_and_backbone(tmp_path):
    """The fused path never hides FLOPs: forcing it gives the op-by-op
    count, for a whole detector and for the backbone at 224x224."""
    cfg = osp.join(REPO, 'configs', 'detection', 'retinanet_poolformer_s12.py')

    def gflops(*args):
        printed = log(tool('get_flops.py', cfg, *args), tmp_path)
        (line, ) = [ln for ln in printed.splitlines() if 'FLOPs' in ln]
        return float(line.split()[1])

    whole = gflops('--shape', '224', '224', '--cfg-options',
                   'model.backbone.fused=False')
    assert whole == gflops('--shape', '224', '224', '--cfg-options',
                           'model.backbone.fused=True')
    backbone = gflops('--shape', '224', '224', '--part', 'backbone')
    assert backbone == pytest.approx(1.82, abs=0.005) and whole > backbone


def test_mmdet_own_benchmark_tool_runs(tiny_data, tmp_path):
    """mmdet's analysis_tools/benchmark.py (shipped in the package) imports
    psutil at module level; its dataloader task runs on CPU."""
    import mmdet
    script = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools',
                      'analysis_tools', 'benchmark.py')
    cfg = shapes_config(tmp_path / 'cfg.py', 'det', tiny_data)
    out = log([sys.executable, script, cfg, '--task', 'dataloader',
               '--max-iter', '3', '--num-warmup', '1', '--log-interval', '1',
               '--work-dir', str(tmp_path)], tmp_path)
    assert 'Overall fps' in out
