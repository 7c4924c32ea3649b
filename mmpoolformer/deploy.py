"""What mmdeploy (1.3.1) needs to export these models exactly, registered by
:mod:`mmpoolformer.compat` when mmdeploy's modules are imported; nothing
here imports mmdeploy otherwise.

1. ``F.adaptive_avg_pool2d`` (UperNet's and PSPNet's pyramid pooling).
   mmdeploy's default rewriter replaces it by an ``avg_pool2d`` whose kernel
   is the traced size divided by the output size, rounded down: wrong
   wherever the output size does not divide the input's (UperNet's scale 6
   on a 16x16 map gives 8x8), and fixed at the traced size in a dynamic
   export. :func:`adaptive_avg_pool2d` computes PyTorch's bins from the
   input's shape in the graph.
2. mmseg's ``Upsample`` (Semantic FPN's scale heads) computes its output
   size with ``int()``, which fixes the traced size in the graph; with a
   scale factor it is the same as ``F.interpolate(...,
   recompute_scale_factor=True)``, which traces the size from the input's.
3. mmseg segmentors export whole-image inference only (mmdeploy's
   ``predict`` rewriters), whatever the model config's ``test_cfg``; a
   config whose test mode is ``'slide'`` would give a graph whose answer is
   not the config's. :func:`whole_image_only` makes its conversion an error.
4. mmdet's RPN post-processing (Mask R-CNN's proposals). mmdeploy's runs one
   NMS over the candidates of all levels with its deploy config's score
   threshold and keeps boxes clipped to zero size; mmdet's runs one NMS per
   level with no score threshold, and drops them (``min_bbox_size``).
   :func:`rpn_predict_by_feat` computes mmdet's. RetinaNet's keeps them too:
   :func:`retina_predict_by_feat` drops them.
5. torch >= 2.9 exports with the dynamo exporter by default, which
   mmdeploy's ``torch2onnx`` does not drive; its export module is given a
   ``torch`` whose ``onnx.export`` passes ``dynamo=False``. mmdeploy's
   RoIAlign symbolic (Mask R-CNN's RoI heads) imports torch's
   ``symbolic_opset9._cast_Long``, which torch removed with its deprecated
   ``_cast_*`` ops (pytorch/pytorch#164641; torch 2.13 has none): it is
   given back, as torch 2.0 defines it.
"""
import torch
import torch.nn.functional as F

from .torchapi import VERSION


def _bins(length, n: int):
    """PyTorch's adaptive-pooling bins over a side of ``length`` (an int,
    or a traced size): bin i spans [floor(i L / n), ceil((i + 1) L / n))."""
    return [(i * length // n, ((i + 1) * length + n - 1) // n)
            for i in range(n)]


def _pool_side(x: torch.Tensor, dim: int, n) -> torch.Tensor:
    if n is None:  # adaptive pooling keeps this side
        return x
    if n == 1:
        return x.mean(dim, keepdim=True)
    parts = [x.narrow(dim, start, end - start).mean(dim, keepdim=True)
             for start, end in _bins(x.shape[dim], int(n))]
    return torch.cat(parts, dim)


def adaptive_avg_pool2d(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` in slices and means whose
    bounds follow ``x``'s shape when traced, so that an exported graph pools
    any input size as PyTorch does. A bin's mean over rows of its means over
    columns is its mean: each row of a bin has the same columns."""
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    out_h, out_w = output_size
    return _pool_side(_pool_side(x, -1, out_w), -2, out_h)


def upsample_forward(self, x: torch.Tensor) -> torch.Tensor:
    """mmseg's ``Upsample.forward`` with its output size traced."""
    if self.size:
        from mmdeploy.core import FUNCTION_REWRITER
        return FUNCTION_REWRITER.get_context().origin_func(self, x)
    # floor(side * scale), as Upsample's int(), then interpolation by size
    return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode,
                         align_corners=self.align_corners,
                         recompute_scale_factor=True)


def register_adaptive_pool(module) -> None:
    """Replace mmdeploy's default rewriter of ``adaptive_avg_pool2d``
    (``module``: ``mmdeploy.pytorch.functions.adaptive_pool``) by
    :func:`adaptive_avg_pool2d`. Backend-specific rewriters (ncnn's,
    TorchScript's) stay. Idempotent."""
    _register('torch.nn.functional.adaptive_avg_pool2d', adaptive_avg_pool2d,
              module.adaptive_avg_pool2d__default)


def _register(name: str, ours, default=None) -> None:
    """Register ``ours`` as mmdeploy's rewriter of ``name``, in place of its
    ``default`` one if given; nothing where ``ours`` already is."""
    from mmdeploy.core import FUNCTION_REWRITER
    registry = FUNCTION_REWRITER._registry
    if any(r['_object'] is ours
           for r in registry._rewrite_records.get(name, [])):
        return
    if default is not None:
        registry.remove_record(default)
    FUNCTION_REWRITER.register_rewriter(func_name=name)(ours)


def check_whole_image(test_cfg) -> None:
    """Raise unless ``test_cfg`` (a segmentor's) is whole-image inference,
    the only one mmdeploy exports."""
    mode = (test_cfg or {}).get('mode', 'whole')
    if mode == 'whole':
        return
    window = ', '.join(f'{k}={test_cfg[k]!r}' for k in ('crop_size', 'stride')
                       if k in test_cfg)
    raise ValueError(
        f"model.test_cfg.mode={mode!r}{f' ({window})' if window else ''}: "
        "mmdeploy exports whole-image inference only, which gives other "
        "logits than the config's sliding windows. To deploy whole-image "
        "inference, convert with "
        "model.test_cfg=dict(mode='whole') in the model config (e.g. "
        "cfg.model.test_cfg = dict(mode='whole') before torch2onnx, or a "
        "config that inherits this one and sets model = dict(test_cfg="
        "dict(_delete_=True, mode='whole'))); for sliding windows, convert "
        "that way and run the graph on each window yourself")


def whole_image_only(self, inputs: torch.Tensor):
    """mmseg's ``EncoderDecoder.extract_feat`` under mmdeploy's export:
    :func:`check_whole_image` on the segmentor's ``test_cfg``, then the
    features. mmdeploy's ``predict`` rewriters (EncoderDecoder's and
    CascadeEncoderDecoder's) run the whole image through ``extract_feat``
    whatever the test mode."""
    from mmdeploy.core import FUNCTION_REWRITER
    check_whole_image(self.test_cfg)
    return FUNCTION_REWRITER.get_context().origin_func(self, inputs)


def register_mmseg(module) -> None:
    """Register :func:`upsample_forward` and :func:`whole_image_only`
    (``module``: mmdeploy's mmseg codebase, imported when a segmentation
    task is built). Idempotent."""
    _register('mmseg.models.utils.wrappers.Upsample.forward',
              upsample_forward)
    _register('mmseg.models.segmentors.EncoderDecoder.extract_feat',
              whole_image_only)


def _drop_small(boxes: torch.Tensor, scores: torch.Tensor, cfg):
    """``scores`` zeroed where a box has a side not over the test config's
    ``min_bbox_size`` (mmdet drops such boxes; a graph's NMS drops score
    0); as they are without the setting."""
    if cfg.get('min_bbox_size', -1) < 0:
        return scores
    size = (boxes[..., 2:] - boxes[..., :2]).min(-1, keepdim=True).values
    return scores * (size > cfg.min_bbox_size).to(scores.dtype)


def rpn_predict_by_feat(self, cls_scores, bbox_preds, score_factors=None,
                        batch_img_metas=None, cfg=None, rescale=False,
                        with_nms=True, **kwargs):
    """mmdet's ``RPNHead.predict_by_feat`` in mmdeploy's graph: per level
    the top ``nms_pre`` anchors' boxes, decoded and clipped; those of a side
    not over ``min_bbox_size`` dropped; NMS per level (each level's scores
    in a class of their own); the top ``max_per_img``. Returns mmdeploy's
    (dets, labels), labels the levels."""
    from mmdeploy.codebase.mmdet.deploy import gather_topk
    from mmdeploy.mmcv.ops import multiclass_nms
    from mmdet.structures.bbox import get_box_tensor
    cfg = self.test_cfg if cfg is None else cfg
    levels, batch = len(cls_scores), cls_scores[0].shape[0]
    priors = self.prior_generator.grid_priors(
        [c.shape[-2:] for c in cls_scores], dtype=bbox_preds[0].dtype,
        device=bbox_preds[0].device)
    nms_pre = cfg.get('nms_pre', -1)
    boxes, scores, anchors = [], [], []
    for level, (cls, reg, prior) in enumerate(zip(cls_scores, bbox_preds,
                                                  priors)):
        cls = cls.permute(0, 2, 3, 1).reshape(batch, -1, self.cls_out_channels)
        score = cls.sigmoid() if self.use_sigmoid_cls else \
            cls.softmax(-1)[..., :1]
        reg = reg.permute(0, 2, 3, 1).reshape(batch, -1,
                                              self.bbox_coder.encode_size)
        prior = get_box_tensor(prior).unsqueeze(0)
        if nms_pre > 0:  # mmdeploy's topk takes min(k, n) in the graph
            _, top = score.squeeze(2).topk(nms_pre)
            reg, score = gather_topk(reg, score, inds=top, batch_size=batch)
            prior = gather_topk(prior, inds=top, batch_size=batch,
                                is_batched=False)
        boxes.append(reg)
        scores.append(F.pad(score, (level, levels - 1 - level)))
        anchors.append(prior)
    boxes = get_box_tensor(self.bbox_coder.decode(
        torch.cat(anchors, 1), torch.cat(boxes, 1),
        max_shape=batch_img_metas[0]['img_shape']))
    scores = _drop_small(boxes, torch.cat(scores, 1), cfg)
    if not with_nms:
        return boxes, scores.sum(-1, keepdim=True)
    # mmdet has no score threshold: the least positive float drops only the
    # zeros (other levels' columns, boxes of zero size)
    return multiclass_nms(
        boxes, scores, cfg.max_per_img, nms_type=cfg.nms.get('type', 'nms'),
        iou_threshold=cfg.nms.iou_threshold,
        score_threshold=torch.finfo(scores.dtype).tiny, pre_top_k=-1,
        keep_top_k=cfg.max_per_img)


def retina_predict_by_feat(self, cls_scores, bbox_preds, score_factors=None,
                           batch_img_metas=None, cfg=None, rescale=False,
                           with_nms=True, **kwargs):
    """mmdeploy's ``BaseDenseHead.predict_by_feat`` for RetinaNet, with
    mmdet's ``min_bbox_size``: boxes of a side not over it get score 0, under
    the score threshold, before NMS."""
    from mmdeploy.codebase.mmdet.deploy import get_post_processing_params
    from mmdeploy.core import FUNCTION_REWRITER
    from mmdeploy.mmcv.ops import multiclass_nms
    from mmdeploy.utils import Backend, get_backend
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    ctx = FUNCTION_REWRITER.get_context()
    # mmdeploy's, in context; ncnn's and RKNN's have NMS of their own
    args = (self, cls_scores, bbox_preds, score_factors, batch_img_metas, cfg,
            rescale)
    if get_backend(ctx.cfg) in (Backend.NCNN, Backend.RKNN):
        return BaseDenseHead.predict_by_feat(*args, with_nms=with_nms,
                                             **kwargs)
    boxes, scores = BaseDenseHead.predict_by_feat(*args, with_nms=False,
                                                  **kwargs)
    cfg = self.test_cfg  # as mmdeploy's
    scores = _drop_small(boxes, scores, cfg)
    if not with_nms:
        return boxes, scores
    post = get_post_processing_params(ctx.cfg)
    return multiclass_nms(
        boxes, scores, post.max_output_boxes_per_class,
        nms_type=cfg.nms.get('type'),
        iou_threshold=cfg.nms.get('iou_threshold', post.iou_threshold),
        score_threshold=cfg.get('score_thr', post.score_threshold),
        pre_top_k=post.pre_top_k,
        keep_top_k=cfg.get('max_per_img', post.keep_top_k))


def register_mmdet(module) -> None:
    """Register :func:`rpn_predict_by_feat` in place of mmdeploy's default
    rewriter of it, and :func:`retina_predict_by_feat` (``module``:
    mmdeploy's mmdet codebase). Idempotent."""
    from mmdeploy.codebase.mmdet.models.dense_heads import rpn_head
    _register('mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat',
              rpn_predict_by_feat, rpn_head.rpn_head__predict_by_feat)
    _register('mmdet.models.dense_heads.retina_head.RetinaHead.'
              'predict_by_feat', retina_predict_by_feat)


class _With:
    """``target`` with some attributes replaced."""

    def __init__(self, target, **replaced):
        self._target, self._replaced = target, replaced

    def __getattr__(self, name):
        if name in self._replaced:
            return self._replaced[name]
        return getattr(self._target, name)


def export_with_torchscript(module) -> None:
    """torch >= 2.5: ``module`` (``mmdeploy.apis.onnx.export``) sees a
    ``torch`` whose ``onnx.export`` passes ``dynamo=False``, the TorchScript
    exporter mmdeploy's rewriters and symbolics are written for (2.9 made
    dynamo the default). Idempotent."""
    if VERSION < '2.5' or isinstance(module.torch, _With):
        return

    def export(*args, **kwargs):
        kwargs.setdefault('dynamo', False)
        return torch.onnx.export(*args, **kwargs)

    module.torch = _With(torch, onnx=_With(torch.onnx, export=export))


def _cast_long(g, input, non_blocking):
    """torch 2.0's ``symbolic_opset9._cast_Long``: a Cast to int64."""
    return g.op('Cast', input, to_i=7)  # ONNX's TensorProto.INT64


def give_cast_long(module) -> None:
    """Newer torch: ``torch.onnx.symbolic_opset9`` is given ``_cast_Long``,
    which ``module`` (``mmdeploy.mmcv.ops.roi_align``) imports when it
    exports mmcv's RoIAlign to ONNX Runtime. A name torch no longer has is
    added; nothing of torch's changes. Idempotent."""
    from torch.onnx import symbolic_opset9
    if not hasattr(symbolic_opset9, '_cast_Long'):
        symbolic_opset9._cast_Long = _cast_long
