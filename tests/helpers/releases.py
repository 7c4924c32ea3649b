"""Files in the layout of the authors' released COCO and ADE20K models
(sail-sg/poolformer, trained with mmdet 2.19 / mmseg 0.19 on mmcv 1.x), made
here from a reference network with random weights, and the models they must
load into."""
import os.path as osp
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn

from mmpoolformer.testing import mmpretrain_poolformer

from .checkout import REPO

#: name -> (our config, the authors' output stages as mmpretrain numbers
#: them (network index), whether the file carries apex's ``amp`` entry).
#: The RetinaNets ran with FORK_LAST3: the stride-4 norm was an Identity,
#: so their files have no ``norm0``.
RELEASES = {
    'retinanet': ('configs/detection/retinanet_poolformer_s12.py',
                  (2, 4, 6), True),
    'mask_rcnn': ('configs/detection/mask_rcnn_poolformer_s12.py',
                  (0, 2, 4, 6), True),
    'fpn': ('configs/segmentation/fpn_poolformer_s12.py', (0, 2, 4, 6),
            False),
}


class AuthorsBackbone(nn.Module):
    """A reference network (mmpretrain's port of the authors' code, the
    same module names) as the backbone of a built detector or segmentor."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return tuple(self.net(x))


def build(config: str, **changes):
    """The model of ``config`` (a path under the checkout) on CPU in eval
    mode, without its ImageNet init (no download), SyncBN as BN."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.model.backbone.init_cfg = None
    if changes:
        cfg.merge_from_dict(dict(model=changes))
    init_default_scope(cfg.default_scope)
    return revert_sync_batchnorm(MODELS.build(cfg.model)).eval()


def randomise_heads(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial values for the norms and BN statistics outside the
    backbone (the convs and linears keep torch's random init)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.startswith('backbone.') or not t.is_floating_point():
                continue
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.dim() == 1:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5 + 0.5)
    return model


def mmcv1_meta(kind: str, classes: Sequence[str], palette=None) -> dict:
    """``meta`` as mmcv 1.x's runner saved it for mmdet 2.19 / mmseg 0.19."""
    meta = dict(
        env_info='sys.platform: linux\nPyTorch: 1.10.0', seed=0,
        exp_name=f'{kind}_poolformer_s12.py',
        config=f'# the authors\' {kind} config (text)\n',
        epoch=12, iter=87960, mmcv_version='1.4.0',
        time='Mon Nov 22 10:00:00 2021', CLASSES=tuple(classes))
    if palette is None:
        meta['mmdet_version'] = '2.19.0'
    else:
        meta.update(mmseg_version='0.19.0', PALETTE=palette, iter=40000)
    return meta


def authors_release(kind: str, seed: int = 0
                    ) -> Tuple[dict, nn.Module, nn.Module]:
    """(the release file's content, the authors' network it holds, and a
    model of ours built from the matching config whose backbone is that
    network: the expected outputs of any model the release loads into).

    The file: ``meta`` (``CLASSES``, and ``PALETTE`` for mmseg, as mmcv 1.x
    saved it), ``state_dict`` (the backbone under ``backbone.`` in the
    authors' names, the neck and heads of our built model, randomised),
    ``optimizer`` (AdamW's state) and, for the detectors, apex's ``amp``.
    """
    config, out_indices, amp = RELEASES[kind]
    net = mmpretrain_poolformer('s12', out_indices=out_indices)
    torch.manual_seed(seed)
    expected = randomise_heads(build(config), seed)
    state = {f'backbone.{k}': v.clone() for k, v in net.state_dict().items()}
    state.update({k: v.clone() for k, v in expected.state_dict().items()
                  if not k.startswith('backbone.')})
    expected.backbone = AuthorsBackbone(net)
    if kind == 'fpn':
        from mmseg.utils import get_classes, get_palette
        meta = mmcv1_meta(kind, get_classes('ade'), get_palette('ade'))
    else:
        from mmdet.evaluation import get_classes
        meta = mmcv1_meta(kind, get_classes('coco'))
    first = next(iter(state))
    release = dict(
        meta=meta, state_dict=state,
        optimizer=dict(
            state={0: dict(step=torch.tensor(10.), exp_avg=torch.zeros_like(
                state[first]), exp_avg_sq=torch.zeros_like(state[first]))},
            param_groups=[dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                               weight_decay=1e-4, amsgrad=False,
                               params=list(range(len(state))))]))
    if amp:
        release['amp'] = {'loss_scaler0': {'loss_scale': 512.0,
                                           'unskipped': 1234}}
    return release, net, expected


def outputs(model: nn.Module, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """A model's raw outputs on ``x``, named: the backbone's features, the
    neck's, and the heads' maps (for Mask R-CNN the RoI heads on two fixed
    boxes per image, so that no NMS decision enters the comparison)."""
    from mmengine.structures import InstanceData
    out = {}
    with torch.no_grad():
        feats = model.backbone(x)
        out.update({f'backbone.{i}': f for i, f in enumerate(feats)})
        if hasattr(model, 'decode_head'):
            out['logits'] = model._forward(x)
            return out
        neck = model.neck(feats)
        out.update({f'neck.{i}': f for i, f in enumerate(neck)})
        if hasattr(model, 'bbox_head'):
            for part, maps in zip(('cls', 'reg'), model.bbox_head(neck)):
                out.update({f'{part}.{i}': m for i, m in enumerate(maps)})
            return out
        for part, maps in zip(('rpn_cls', 'rpn_reg'), model.rpn_head(neck)):
            out.update({f'{part}.{i}': m for i, m in enumerate(maps)})
        h, w = x.shape[2:]
        boxes = torch.tensor([[0., 0., w / 2, h / 2], [4., 8., w, h]])
        rois = [InstanceData(bboxes=boxes) for _ in range(len(x))]
        from mmdet.structures import DetDataSample
        samples = [DetDataSample(metainfo=dict(img_shape=(h, w)))
                   for _ in range(len(x))]
        roi = model.roi_head.forward(neck, rois, samples)
        out.update({f'roi.{i}': t for i, t in enumerate(roi)})
    return out
