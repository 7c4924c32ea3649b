"""Every family of shipped config reads back what its own training wrote:
trained a few iterations with the config's own optimizer, param_scheduler,
hooks and default_hooks (only the data, image size, length and ImageNet
init changed: helpers.configs.shipped_config; and the detectors' score
threshold), its checkpoint goes through
tools/test.py, tools/train.py --resume (at the right iteration, with the
schedulers' state) and mmdet's / mmseg's init API."""
import json
import os.path as osp
from collections import Counter

import pytest
import torch

from helpers.checkout import run, tool
from helpers.configs import shipped_config
from mmpoolformer import safeload

pytestmark = pytest.mark.slow

#: id -> (shipped config, extra tools/train.py arguments, the metric that
#: tools/test.py must report, changes). The detectors run mmdet's
#: schedule_1x (MultiStepLR: a collections.Counter in every checkpoint),
#: the UperNet its depth-decay constructor under --amp, as its config says
#: to train. The detectors score every box, so that a few iterations'
#: predictions are not all below the threshold (the metrics need some).
FAMILIES = {
    'retinanet': ('detection/retinanet_poolformer_s12.py', (),
                  'coco/bbox_mAP', dict(test_cfg=dict(score_thr=0.0))),
    'mask_rcnn': ('detection/mask_rcnn_poolformer_s12.py', (),
                  'coco/segm_mAP', dict(test_cfg=dict(rcnn=dict(
                      score_thr=0.0)))),
    'fpn': ('segmentation/fpn_poolformer_s12.py', (), 'mIoU', {}),
    'upernet_amp': ('segmentation/upernet_convformer_s18.py', ('--amp', ),
                    'mIoU', {}),
}


def lengths(det):
    """(the config's length, the first run's shorter one as --cfg-options,
    the first and the last checkpoint's names)."""
    if det:  # 8 images in batches of 4: 2 iterations an epoch
        return (dict(train_cfg=dict(max_epochs=2, val_interval=9)),
                ['train_cfg.max_epochs=1'], 'epoch_1.pth', 'epoch_2.pth')
    return (dict(train_cfg=dict(max_iters=4, val_interval=9),
                 default_hooks=dict(checkpoint=dict(interval=2))),
            ['train_cfg.max_iters=2'], 'iter_2.pth', 'iter_4.pth')


def output(cmd, cwd):
    proc = run(cmd, cwd)
    return proc.stdout + proc.stderr


def check_schedulers(ckpt):
    """Each scheduler stepped once per epoch or iteration the run made
    (``_global_step``: ``last_step`` counts only the steps from its
    ``begin``), its state as mmengine saved it (MultiStepLR's milestones a
    Counter)."""
    meta = ckpt['meta']
    states = ckpt['param_schedulers']
    assert states
    for state in states:
        done = meta['epoch'] if state['by_epoch'] else meta['iter']
        assert state['_global_step'] == done, (state, meta)
    return states


@pytest.mark.parametrize('family', list(FAMILIES))
def test_shipped_config_round_trips(family, tiny_data, tmp_path):
    name, extra, metric, model = FAMILIES[family]
    det = name.startswith('detection/')
    length, first_length, first, last = lengths(det)
    cfg = shipped_config(tmp_path / 'cfg.py', name, tiny_data, model=model,
                         **length)
    work = tmp_path / 'work'

    def train(*args):
        return output(tool('train.py', cfg, '--work-dir', work, *extra,
                           *args), tmp_path)

    out = train('--cfg-options', *first_length)
    if '--amp' in extra:
        assert 'Mixed precision: bf16' in out
    ckpt = safeload.load(str(work / first))
    states = check_schedulers(ckpt)
    if det:
        assert any(isinstance(s.get('milestones'), Counter) for s in states)

    # tools/test.py on what training wrote
    test = tmp_path / 'test'
    out = output(tool('test.py', cfg, work / first, '--work-dir', test),
                 tmp_path)
    assert f'Load checkpoint from {work / first}' in out
    metrics = json.loads((test / 'test_metrics.json').read_text())
    assert metric in metrics

    # --resume: from the first checkpoint, at its iteration, to the end
    out = train('--resume')
    assert f'Resuming from {work / first}' in out
    assert f"resumed epoch: {ckpt['meta']['epoch']}, iter: " \
        f"{ckpt['meta']['iter']}" in out
    final = safeload.load(str(work / last))
    assert final['meta']['iter'] == 2 * ckpt['meta']['iter']
    check_schedulers(final)

    # the init API on the resumed run's checkpoint: its weights, its classes
    if det:
        from mmdet.apis import inference_detector, init_detector
        img = osp.join(tiny_data['coco'], 'val2017', 'validation_00000.jpg')
        model = init_detector(cfg, str(work / last), device='cpu')
        result = inference_detector(model, img)
        assert result.pred_instances.bboxes.shape[1] == 4
    else:
        from mmseg.apis import inference_model, init_model
        img = osp.join(tiny_data['ade'], 'images', 'validation',
                       'validation_00000.jpg')
        model = init_model(cfg, str(work / last), device='cpu')
        assert inference_model(model, img).pred_sem_seg.shape == (96, 96)
    saved = final['state_dict']
    state = model.state_dict()
    assert state.keys() == saved.keys()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    classes = ckpt['meta']['dataset_meta']['classes']
    assert tuple(model.dataset_meta['classes']) == tuple(classes)
