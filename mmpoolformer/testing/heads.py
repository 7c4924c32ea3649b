"""The stock mmdet/mmseg heads our backbones are combined with, as the
README's table states them (the tests render the table from ``STOCK_HEADS``
and compare), and one training step of a model on random targets."""
import math
import warnings

import torch

from ..models.checks import UnusedOutputWarning

#: Each row: the stock config, the backbone's out_indices, what else must
#: change for PoolFormer-S12's channels (64, 128, 320, 512), and the strides
#: of the maps the heads read (the neck's outputs, or the backbone's). mmseg's
#: stock configs hand ``pretrained`` (a ResNet's) to any backbone.
STOCK_HEADS = [
    dict(head='RetinaNet',
         config='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
         out_indices=(1, 2, 3),
         changes=dict(neck=dict(in_channels=[128, 320, 512], start_level=0)),
         strides=(8, 16, 32, 64, 128)),
    dict(head='FCOS',
         config='mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
         out_indices=(1, 2, 3),
         changes=dict(neck=dict(in_channels=[128, 320, 512], start_level=0)),
         strides=(8, 16, 32, 64, 128)),
    dict(head='Mask R-CNN',
         config='mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
         out_indices=(0, 1, 2, 3),
         changes=dict(neck=dict(in_channels=[64, 128, 320, 512])),
         strides=(4, 8, 16, 32, 64)),
    dict(head='Cascade Mask R-CNN',
         config='mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py',
         out_indices=(0, 1, 2, 3),
         changes=dict(neck=dict(in_channels=[64, 128, 320, 512])),
         strides=(4, 8, 16, 32, 64)),
    dict(head='DINO',
         config='mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
         out_indices=(1, 2, 3),
         changes=dict(neck=dict(in_channels=[128, 320, 512])),
         strides=(8, 16, 32, 64)),
    dict(head='UperNet',
         config='mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
         out_indices=(0, 1, 2, 3),
         changes=dict(pretrained=None,
                      decode_head=dict(in_channels=[64, 128, 320, 512]),
                      auxiliary_head=dict(in_channels=320)),
         strides=(4, 8, 16, 32)),
    dict(head='Semantic FPN',
         config='mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py',
         out_indices=(0, 1, 2, 3),
         changes=dict(pretrained=None,
                      neck=dict(in_channels=[64, 128, 320, 512])),
         strides=(4, 8, 16, 32)),
]


def as_code(value) -> str:
    """``value`` as config code: dicts as ``dict(k=v)``."""
    if isinstance(value, dict):
        return 'dict(' + ', '.join(f'{k}={as_code(v)}'
                                   for k, v in value.items()) + ')'
    return repr(value)


def stock_heads_table() -> str:
    """The README's table of ``STOCK_HEADS``, in Markdown."""
    lines = ['| head | stock config | `out_indices` | also set (S12) '
             '| strides read |',
             '|---|---|---|---|---|']
    for row in STOCK_HEADS:
        changes = ', '.join(f'{k}={as_code(v)}'
                            for k, v in row['changes'].items())
        strides = row['strides']
        lines.append(f"| {row['head']} | `{row['config']}` | "
                     f"`{row['out_indices']}` | `{changes}` | "
                     f'{strides[0]}-{strides[-1]} ({len(strides)} levels) |')
    return '\n'.join(lines) + '\n'


def stock_model_cfg(row: dict, backbone: dict):
    """The model config of ``row``'s stock config with ``backbone``
    (type, arch, ...) at the row's out_indices and the row's changes; and
    the config's default scope."""
    from mmengine.config import Config
    # as a user's config names it (Config.fromfile takes no 'mmdet::')
    cfg = Config.fromstring(f"_base_ = '{row['config']}'", '.py')
    cfg.model.backbone = dict(backbone, out_indices=row['out_indices'])
    cfg.merge_from_dict(dict(model=row['changes']))
    return cfg.model, cfg.default_scope


def random_batch(scope: str, size=(96, 128), num_classes: int = 3,
                 batch: int = 2, seed: int = 0) -> dict:
    """A batch of random ``size`` images with random boxes and masks
    (mmdet) or label maps (mmseg), as a dataloader gives it."""
    h, w = size
    gen = torch.Generator().manual_seed(seed)
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(batch, (3, h, w), num_items=[3] * batch,
                              num_classes=num_classes, with_mask=True)
    return seg_batch([size] * batch, num_classes, gen)


def seg_batch(shapes, num_classes: int = 150, gen=None) -> dict:
    """An mmseg batch of random images of the (H, W) ``shapes`` with random
    label maps, as a dataloader gives it (``gen``: a torch.Generator, or
    torch's global one)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for h, w in shapes:
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                    dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(h, w),
                                             ori_shape=(h, w),
                                             pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, num_classes, (1, h, w), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def train_step(model, data: dict) -> dict:
    """One forward and backward of ``model`` (in train mode) on ``data``.
    Returns the loss (summed as training sums it) and the names of its
    terms, the (H, W) of the batch the backbone read, of the backbone's
    outputs and of the maps the heads read, the names of the parameters
    requiring grad that received none, and the backbone's
    :class:`~mmpoolformer.models.checks.UnusedOutputWarning` messages."""
    seen = {}

    def keep(name):
        def hook(module, args, out):
            seen[name] = [tuple(t.shape[-2:]) for t in out]
            if name == 'backbone':
                seen['input'] = tuple(args[0].shape[-2:])
        return hook

    handles = [model.backbone.register_forward_hook(keep('backbone'))]
    if getattr(model, 'neck', None) is not None:
        handles.append(model.neck.register_forward_hook(keep('features')))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', UnusedOutputWarning)
            model.train()
            for p in model.parameters():
                p.grad = None
            data = model.data_preprocessor(data, True)
            losses = model(**data, mode='loss')
            loss, _ = model.parse_losses(losses)
            loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    return dict(loss=loss.item(), losses=sorted(losses),
                input=seen['input'],
                backbone=seen['backbone'],
                features=seen.get('features', seen['backbone']),
                no_grad=[n for n, p in model.named_parameters()
                         if p.requires_grad and p.grad is None],
                unused=[str(w.message) for w in caught
                        if issubclass(w.category, UnusedOutputWarning)])


def sizes_at(size, strides):
    """(H, W) of maps at ``strides`` of an ``size`` batch: strided convs
    and pools round up."""
    return [(math.ceil(size[0] / s), math.ceil(size[1] / s))
            for s in strides]
