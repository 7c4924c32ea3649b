"""Test-time augmentation in the shipped configs: RetinaNet carries mmdet's
(3 scales x flip), the segmentors mmseg's ADE20K one (6 ratios x flip; its
PoolFormer configs carry none), Mask R-CNN none (mmdet 3.3 has no
instance-segmentation TTA), and
``tools/test.py --tta``'s wrapping (:func:`enable_tta`) builds a model and a
pipeline from each kind."""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from helpers.configs import CONFIGS
from helpers.tiers import per_config
from mmpoolformer.engine.launch import enable_tta
from test_configs import later_size


def configs(pattern):
    """The configs ``pattern`` names, less the larger sizes that are
    one-line deltas of their family's first (as test_configs.py)."""
    return [p for p in sorted(glob.glob(str(CONFIGS / pattern)))
            if not later_size(p)]


RETINANET = configs('detection/retinanet_*.py')
MASK_RCNN = configs('detection/mask_rcnn_*.py')
SEG = configs('segmentation/*.py')


def upstream(package, path):
    """A config shipped in ``package``'s ``.mim/configs``."""
    module = __import__(package)
    return Config.fromfile(osp.join(osp.dirname(module.__file__), '.mim',
                                    'configs', path))


def unscoped(node):
    """``node`` without the ``_scope_`` keys a ``pkg::`` base adds."""
    if isinstance(node, dict):
        return {k: unscoped(v) for k, v in node.items() if k != '_scope_'}
    if isinstance(node, (list, tuple)):
        return [unscoped(v) for v in node]
    return node


@pytest.fixture(scope='module')
def mmdet_tta():
    return upstream('mmdet', 'retinanet/retinanet_tta.py')


@pytest.fixture(scope='module')
def mmseg_tta():
    return upstream('mmseg', '_base_/datasets/ade20k.py')


@pytest.mark.parametrize('path', per_config(RETINANET))
def test_retinanet_carries_mmdets_tta(path, mmdet_tta):
    cfg = Config.fromfile(path)
    assert cfg.tta_model.type == 'DetTTAModel'
    assert unscoped(cfg.tta_model) == unscoped(mmdet_tta.tta_model)
    assert unscoped(cfg.tta_pipeline) == unscoped(mmdet_tta.tta_pipeline)
    scales = [t.scale for t in cfg.tta_pipeline[1].transforms[0]]
    assert scales == [(1333, 800), (666, 400), (2000, 1200)]


@pytest.mark.parametrize('path', per_config(MASK_RCNN))
def test_mask_rcnn_refuses_tta_in_one_line(path):
    cfg = Config.fromfile(path)
    assert 'tta_model' not in cfg and 'tta_pipeline' not in cfg
    with pytest.raises(ValueError, match='no test-time augmentation for '
                       'instance segmentation'):
        enable_tta(cfg)


@pytest.mark.parametrize('path', per_config(SEG))
def test_segmentor_carries_mmsegs_tta(path, mmseg_tta):
    cfg = Config.fromfile(path)
    assert cfg.tta_model.type == 'SegTTAModel'
    assert unscoped(cfg.tta_model) == dict(type='SegTTAModel')
    assert unscoped(cfg.tta_pipeline) == unscoped(mmseg_tta.tta_pipeline)
    ratios = [t.scale_factor for t in cfg.tta_pipeline[1].transforms[0]]
    assert ratios == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def test_a_config_without_tta_settings_is_named():
    cfg = Config(dict(default_scope='mmseg', model=dict(type='X'),
                      tta_model=dict(type='SegTTAModel')))
    with pytest.raises(ValueError, match='sets no tta_pipeline;'):
        enable_tta(cfg)


def views(cfg, tmp_path):
    """What the TTA pipeline of ``cfg`` makes of a 60x80 image."""
    from mmengine.dataset import Compose
    img = str(tmp_path / 'img.png')
    cv2.imwrite(img, np.random.default_rng(0).integers(
        0, 255, (60, 80, 3), dtype=np.uint8))
    seg = str(tmp_path / 'seg.png')
    cv2.imwrite(seg, np.ones((60, 80), np.uint8))
    info = dict(img_path=img, img_id=0, instances=[], seg_map_path=seg,
                reduce_zero_label=True, seg_fields=[])
    return Compose(cfg.test_dataloader.dataset.pipeline)(info)


@pytest.mark.parametrize('name,n', [
    ('detection/retinanet_poolformer_s12.py', 6),
    ('segmentation/fpn_poolformer_s12.py', 12),
    ('segmentation/upernet_caformer_s18.py', 12)])
def test_tta_model_and_pipeline_build(name, n, tmp_path):
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(str(CONFIGS / name))
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = None  # no download here
    enable_tta(cfg)
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == cfg.tta_model.type
    assert type(model.module.backbone).__name__ in ('PoolFormer', 'CAFormer')
    out = views(cfg, tmp_path)
    samples = out['data_samples']
    assert len(out['inputs']) == len(samples) == n
    flips = [s.flip for s in samples]
    assert flips.count(True) == flips.count(False) == n // 2
    heights = sorted({s.img_shape[0] for s in samples})
    assert len(heights) == n // 2  # each scale once, flipped and not
