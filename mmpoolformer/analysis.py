"""A config's model for the analysis tools (FLOPs, ONNX export, the model
index): built on CPU from a config, and as a function of one image batch up
to its raw outputs."""
from typing import Optional, Sequence, Tuple

import torch

# The image sizes the analysis tools use unless told otherwise (H, W): a
# 1333x800 COCO image padded to 32, and an ADE20K training crop.
DEFAULT_SHAPES = dict(mmdet=(800, 1344), mmseg=(512, 512))


def build_model(config: str, checkpoint: Optional[str] = None,
                cfg_options: Optional[dict] = None):
    """The detector or segmentor of ``config`` on CPU in eval mode, SyncBN
    reverted to BN; the checkpoint loaded if given, else random weights (no
    pretrained download). Returns (model, cfg)."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    import mmpoolformer  # noqa: F401  (registers the backbones)
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in DEFAULT_SHAPES:
        raise ValueError(f'{config}: default_scope must be one of '
                         f'{sorted(DEFAULT_SHAPES)}, got {scope!r}')
    init_default_scope(scope)
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.eval(), cfg


def flatten(outputs) -> tuple:
    """Nested lists and tuples of tensors as one flat tuple."""
    if isinstance(outputs, (list, tuple)):
        return tuple(t for o in outputs for t in flatten(o))
    return (outputs, )


class RawOutputs(torch.nn.Module):
    """A model as a function of one image batch, up to its raw outputs (no
    post-processing), as a flat tuple of tensors.

    ``part='backbone'``: the backbone's features. ``part='model'``: a
    segmentor's logits; a one-stage detector's backbone, neck and head maps;
    a two-stage detector's features and RPN maps (its RoI head needs
    proposals, which are post-processing). With ``data_samples`` (FLOP
    counting), a two-stage detector runs whole, proposals and RoI head
    included, as mmdet's own ``get_flops.py`` counts it.
    """

    def __init__(self, model, part: str = 'model', data_samples=None):
        super().__init__()
        if part not in ('backbone', 'model'):
            raise ValueError(f"part must be 'backbone' or 'model', got "
                             f'{part!r}')
        self.model, self.part, self.data_samples = model, part, data_samples
        self.two_stage = hasattr(model, 'rpn_head') and \
            hasattr(model, 'roi_head')

    def forward(self, x):
        if self.part == 'backbone':
            return flatten(self.model.backbone(x))
        if self.two_stage and self.data_samples is None:
            feats = self.model.extract_feat(x)
            return flatten((feats, self.model.rpn_head(feats)))
        if self.data_samples is not None:
            return flatten(self.model._forward(x, self.data_samples))
        return flatten(self.model._forward(x))


def det_samples(n: int, shape: Sequence[int]):
    """``n`` mmdet data samples with the meta a detector's forward reads."""
    from mmdet.structures import DetDataSample
    h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                batch_input_shape=(h, w), scale_factor=(1., 1.))
    return [DetDataSample(metainfo=meta) for _ in range(n)]


def sdpa_flops(inputs, outputs) -> int:
    """Multiply-adds of ``softmax(q k^T) v`` for mmengine's FLOP counter,
    which skips ``scaled_dot_product_attention``: q k^T and the product
    with v (q: [..., L, E], k: [..., S, E], v: [..., S, Ev])."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = 1
    for n in q[:-2]:
        batch *= n
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def count_flops(config: str, shape: Optional[Sequence[int]] = None,
                part: str = 'model',
                cfg_options: Optional[dict] = None
                ) -> Tuple[int, int, Tuple[int, int]]:
    """(FLOPs as multiply-adds, parameters, (H, W)) of ``config``'s model
    (or its backbone) at ``shape``, by default :data:`DEFAULT_SHAPES` of its
    scope; a two-stage detector counted whole."""
    from mmengine.analysis import FlopAnalyzer
    model, cfg = build_model(config, cfg_options=cfg_options)
    shape = tuple(shape or DEFAULT_SHAPES[cfg.default_scope])
    wrapper = RawOutputs(model, part)
    if part == 'model' and wrapper.two_stage:
        # counted whole: proposals through the RoI head
        wrapper.data_samples = det_samples(1, shape)
    x = torch.randn(1, 3, *shape)
    with torch.no_grad():
        analyzer = FlopAnalyzer(wrapper, (x, )).set_op_handle(
            'aten::scaled_dot_product_attention', sdpa_flops)
        analyzer.unsupported_ops_warnings(False)
        flops = analyzer.total()
    module = model.backbone if part == 'backbone' else model
    params = sum(p.numel() for p in module.parameters())
    return flops, params, shape
