"""The demo end to end in quick mode, and the dataset it generates."""
import json
import os.path as osp
import sys

import numpy as np
import pytest
from PIL import Image

from mmpoolformer.datasets import make_dataset
from helpers.checkout import run, tool


def test_generator_is_deterministic_and_valid(tmp_path):
    a = make_dataset(str(tmp_path / 'a'), 3, 2, size=64, seed=5)
    b = make_dataset(str(tmp_path / 'b'), 3, 2, size=64, seed=5)
    c = make_dataset(str(tmp_path / 'c'), 3, 2, size=64, seed=6)
    ann = 'annotations/instances_train2017.json'
    ja = json.load(open(osp.join(a['coco'], ann)))
    assert ja == json.load(open(osp.join(b['coco'], ann)))
    assert ja != json.load(open(osp.join(c['coco'], ann)))
    img = osp.join(a['coco'], 'train2017', 'training_00000.jpg')
    assert open(img, 'rb').read() == open(
        img.replace(str(tmp_path / 'a'), str(tmp_path / 'b')), 'rb').read()
    # boxes enclose masks, and semantic labels agree with the instances
    seg = np.array(Image.open(osp.join(
        a['ade'], 'annotations', 'training', 'training_00000.png')))
    anns = [x for x in ja['annotations'] if x['image_id'] == 1]
    assert anns and set(np.unique(seg)) == {1} | {
        x['category_id'] + 1 for x in anns}
    for x in anns:
        x0, y0, w, h = x['bbox']
        poly = np.array(x['segmentation'][0]).reshape(-1, 2)
        assert poly[:, 0].min() >= x0 and poly[:, 0].max() < x0 + w
        assert poly[:, 1].min() >= y0 and poly[:, 1].max() < y0 + h
        assert 0 < x['area'] <= w * h


def test_generator_runs_as_a_module_without_warning(tmp_path):
    """``python -m mmpoolformer.datasets.shapes``: the package does not
    import the module before runpy runs it (runpy warns if it did)."""
    out = run([sys.executable, '-m', 'mmpoolformer.datasets.shapes',
               str(tmp_path), '--train', '1', '--val', '1', '--size', '32'],
              tmp_path)
    assert 'RuntimeWarning' not in out.stderr, out.stderr
    assert osp.isfile(tmp_path / 'coco' / 'annotations' /
                      'instances_val2017.json')


def test_loaders_read_the_dataset(tmp_path):
    from mmdet.datasets import CocoDataset
    from mmseg.datasets import ADE20KDataset
    paths = make_dataset(str(tmp_path), 4, 2, size=64, seed=0)
    det = CocoDataset(
        data_root=paths['coco'], ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=('circle', 'square', 'triangle')),
        pipeline=[], test_mode=True)
    assert len(det) == 2 and det[0]['instances']
    seg = ADE20KDataset(
        data_root=paths['ade'], data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'), pipeline=[])
    assert len(seg) == 2 and seg[0]['seg_map_path'].endswith('.png')


@pytest.mark.slow
def test_quick_demo(tmp_path):
    out = run(tool('demo.py', '--quick'), tmp_path, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    log = out.stdout
    assert 'held-out results (untrained -> trained)' in log
    for line in ('det   coco/bbox_mAP_50', 'seg   mIoU'):
        assert line in log
    assert 'Epoch(train)' in log and 'Iter(train)' in log  # progress shown
    for name in ('det_predictions', 'det_curves', 'seg_predictions',
                 'seg_curves'):
        path = tmp_path / 'outputs' / 'demo' / f'{name}.png'
        assert str(path) in log
        with Image.open(path) as im:
            assert im.format == 'PNG' and min(im.size) > 64
