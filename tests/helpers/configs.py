"""Configs for tests: the demo's, on the data the tests write, on a tiny
schedule; the checkout's configs built without downloads, and one training
step and prediction of their models."""
import os.path as osp
import pathlib

import torch
from mmengine.config import Config

from mmpoolformer.testing.heads import train_step
from .checkout import REPO, run, tool

#: The checkout's configs/.
CONFIGS = pathlib.Path(REPO) / 'configs'

# The demo configs hold the shapes dataset's settings (configs/demo/); the
# tests' configs are made from them, with the data they write and a tiny
# schedule.
DEMO = dict(det=('data/shapes/coco/', 'retinanet_poolformer_s12_shapes.py'),
            seg=('data/shapes/ade/ADEChallengeData2016',
                 'fpn_poolformer_s12_shapes.py'))
TINY = dict(
    det=dict(train_cfg=dict(max_epochs=2, val_interval=2),
             train_dataloader=dict(batch_size=2),
             val_dataloader=dict(batch_size=1),
             test_dataloader=dict(batch_size=1)),
    seg=dict(train_cfg=dict(max_iters=4, val_interval=4),
             train_dataloader=dict(batch_size=2),
             param_scheduler=[dict(type='PolyLR', power=0.9, eta_min=0.0,
                                   begin=0, end=4, by_epoch=False)],
             default_hooks=dict(checkpoint=dict(interval=4))))


def _repoint(node, old, new):
    """``node`` with every string that starts with ``old`` moved to
    ``new``."""
    if isinstance(node, dict):
        return type(node)({k: _repoint(v, old, new) for k, v in node.items()})
    if isinstance(node, (list, tuple)):
        return type(node)(_repoint(v, old, new) for v in node)
    if isinstance(node, str) and node.startswith(old):
        return new + node[len(old):]
    return node


def load_masks(cfg):
    """Make every data loader of ``cfg`` load the instance masks."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for step in cfg[loader].dataset.pipeline:
            if step.type == 'LoadAnnotations':
                step.with_mask = True


def shapes_config(path, task, data, model_from=None, **changes):
    """Write a config to ``path``: the demo config of ``task`` ('det' or
    'seg') reading ``data`` (from ``tiny_data``) on a tiny schedule, with
    ``changes`` merged last. ``model_from`` takes the model of another
    detection config (e.g. 'mask_rcnn_poolformer_s12.py'), masks loaded."""
    root, name = DEMO[task]
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', name))
    new_root = data['coco' if task == 'det' else 'ade']
    cfg = Config(_repoint(cfg.to_dict(), root, new_root))
    if model_from is not None:
        other = Config.fromfile(
            osp.join(REPO, 'configs', 'detection', model_from))
        cfg.model = other.model
        cfg.model.backbone.init_cfg = None  # no download: from scratch
        load_masks(cfg)
        for evaluator in ('val_evaluator', 'test_evaluator'):
            cfg[evaluator].metric = other[evaluator].metric
    cfg.merge_from_dict(dict(TINY[task], **changes))
    cfg.default_hooks.logger.interval = 1
    cfg.dump(str(path))
    return str(path)


def trained(tmp_path_factory, task, data, **changes):
    """(config, work dir) of the demo's ``task`` config with ``changes``,
    trained on its tiny schedule by tools/train.py."""
    tmp = tmp_path_factory.mktemp(task)
    cfg = shapes_config(tmp / 'cfg.py', task, data, **changes)
    work = tmp / 'work'
    run(tool('train.py', cfg, '--work-dir', work), tmp)
    return cfg, work


def shipped_config(path, name, data, **changes):
    """Write a config to ``path``: the shipped config ``name`` (e.g.
    'detection/retinanet_poolformer_s12.py') with its own model, optimizer
    wrapper, param_scheduler, hooks and default_hooks, and only what it
    must not keep here changed: the demo's data (from ``tiny_data``, with
    its classes and image size), no ImageNet download, then ``changes``
    (the length: train_cfg, the checkpoint interval) merged last."""
    task = 'det' if name.startswith('detection/') else 'seg'
    root, demo = DEMO[task]
    demo = Config(_repoint(Config.fromfile(CONFIGS / 'demo' / demo).to_dict(),
                           root, data['coco' if task == 'det' else 'ade']))
    cfg = Config.fromfile(CONFIGS / name)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'val_evaluator', 'test_evaluator'):
        cfg[key] = demo[key]
    model = cfg.model
    model.backbone.init_cfg = None  # no download: from scratch
    if task == 'det':
        heads = [model.roi_head.bbox_head, model.roi_head.mask_head] \
            if 'roi_head' in model else [model.bbox_head]
        for head in heads:
            head.num_classes = demo.model.bbox_head.num_classes
        if 'roi_head' in model:  # masks loaded and scored
            load_masks(cfg)
            for evaluator in ('val_evaluator', 'test_evaluator'):
                cfg[evaluator].metric = ['bbox', 'segm']
    else:
        model.data_preprocessor.size = demo.model.data_preprocessor.size
        for head in ('decode_head', 'auxiliary_head'):
            if head in model:
                model[head].num_classes = demo.model.decode_head.num_classes
        if model.test_cfg.get('mode') == 'slide':  # windows of the image
            model.test_cfg.update(crop_size=(64, 64), stride=(32, 32))
    cfg.merge_from_dict(changes)
    cfg.default_hooks.logger.interval = 1
    cfg.dump(str(path))
    return str(path)


def build(path, size=None, **backbone):
    """The model of config ``path`` (mmdet or mmseg) with random weights (no
    download) and ``backbone`` changes; a segmentor pads to ``size`` if
    given. Returns (model, cfg)."""
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(str(path))
    scope = cfg.default_scope
    init_default_scope(scope)
    cfg.model.backbone.init_cfg = None  # no download here
    cfg.model.backbone.update(backbone)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
        return MODELS.build(cfg.model), cfg
    from mmengine.model import revert_sync_batchnorm
    from mmseg.registry import MODELS
    if size is not None:
        cfg.model.data_preprocessor.size = size
    return revert_sync_batchnorm(MODELS.build(cfg.model)), cfg


_segmentors = {}


def build_segmentor(path, **backbone):
    """:func:`build` of a segmentor padding to 64x64, kept for the next
    test that asks for the same one (the optimizer tests read many)."""
    key = (str(path), tuple(sorted(backbone.items())))
    if key not in _segmentors:
        _segmentors[key] = build(path, (64, 64), **backbone)
    return _segmentors[key]


def train_and_predict(model, train, test, every_parameter=False):
    """One training step of ``model`` on the batch ``train`` (loss summed
    as training sums it, backward), checked: a finite loss, a gradient
    for every backbone parameter (every parameter with
    ``every_parameter``) and no unused-output warning; then ``model``'s predictions for ``test``.
    Returns (:func:`~mmpoolformer.testing.heads.train_step`'s report,
    predictions)."""
    step = train_step(model, train)
    assert torch.isfinite(torch.tensor(step['loss'])), step['loss']
    missing = [n for n in step['no_grad']
               if every_parameter or n.startswith('backbone.')]
    assert not missing, f'no gradient: {missing}'
    assert not step['unused'], step['unused']  # the backbone's own check
    model.zero_grad()
    model.eval()
    with torch.no_grad():
        return step, model(**model.data_preprocessor(test, False),
                           mode='predict')
