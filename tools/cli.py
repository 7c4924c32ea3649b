"""What the tools share: train's and test's common options and a config
prepared for this machine; the analysis tools' model as a function of one
image batch."""
import argparse

import torch

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmpoolformer  # noqa: F401  (registers models and hooks)
from mmpoolformer.engine import LAUNCHERS, prepare


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options both tools take."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument('config', help='config file')
    p.add_argument('--work-dir', help='where logs, metrics and checkpoints '
                   'go (default: work_dirs/<config name>)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config keys, e.g. a.b=1')
    p.add_argument('--launcher', default='none', choices=LAUNCHERS)
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return p


def load_config(args: argparse.Namespace) -> Config:
    """The config file with ``--cfg-options`` merged, prepared to run here."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    prepare(cfg, args.config, args.launcher, args.work_dir, args.local_rank)
    return cfg


def build_runner(cfg: Config) -> Runner:
    """The config's own runner type if it names one, else mmengine's."""
    return RUNNERS.build(cfg) if 'runner_type' in cfg \
        else Runner.from_cfg(cfg)


# The image sizes the analysis tools use unless told otherwise (H, W): a
# 1333x800 COCO image padded to 32, and an ADE20K training crop.
DEFAULT_SHAPES = dict(mmdet=(800, 1344), mmseg=(512, 512))


def build_model(config: str, checkpoint: str = None, cfg_options=None):
    """The detector or segmentor of ``config`` on CPU in eval mode, SyncBN
    reverted to BN; the checkpoint loaded if given, else random weights (no
    pretrained download). Returns (model, cfg)."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in DEFAULT_SHAPES:
        raise SystemExit(f'{config}: default_scope must be one of '
                         f'{sorted(DEFAULT_SHAPES)}, got {scope!r}')
    init_default_scope(scope)
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.eval(), cfg


def flatten(outputs):
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


def det_samples(n: int, shape):
    """``n`` mmdet data samples with the meta a detector's forward reads."""
    from mmdet.structures import DetDataSample
    h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                batch_input_shape=(h, w), scale_factor=(1., 1.))
    return [DetDataSample(metainfo=meta) for _ in range(n)]
