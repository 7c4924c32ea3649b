"""The demo's configs speak of shapes: their classes and palette are the
shapes dataset's own (mmpoolformer.datasets), not ADE20K's, and the
segmentation set reads the written labels as those classes."""
import numpy as np
from mmengine.config import Config
from mmengine.registry import init_default_scope

from helpers.configs import CONFIGS, shapes_config
from mmpoolformer.datasets import PALETTE, SEG_CLASSES, SEG_PALETTE, SHAPES

DEMO = CONFIGS / 'demo'


def palette(meta):
    return [tuple(c) for c in meta['palette']]


def test_detection_demo_names_the_shapes():
    cfg = Config.fromfile(str(DEMO / 'retinanet_poolformer_s12_shapes.py'))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        meta = cfg[loader].dataset.metainfo
        assert tuple(meta['classes']) == SHAPES
        assert palette(meta) == PALETTE
    assert cfg.model.bbox_head.num_classes == len(SHAPES)


def test_segmentation_demo_names_background_and_shapes(tiny_data, tmp_path):
    cfg = Config.fromfile(shapes_config(tmp_path / 'seg.py', 'seg',
                                        tiny_data))
    assert cfg.model.decode_head.num_classes == len(SEG_CLASSES)
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    for loader in ('train_dataloader', 'val_dataloader'):
        dataset = DATASETS.build(cfg[loader].dataset)
        assert tuple(dataset.metainfo['classes']) == SEG_CLASSES
        assert palette(dataset.metainfo) == SEG_PALETTE
    # the labels read are background 0 and shapes 1-3 (files: 1-4)
    sample = dataset[0]['data_samples']
    labels = set(np.unique(sample.gt_sem_seg.data.numpy()).tolist())
    assert 0 in labels and labels <= {0, 1, 2, 3}
