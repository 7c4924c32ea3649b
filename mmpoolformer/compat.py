"""One fix to mmsegmentation 1.2.2, applied when mmseg is in use.

``mmseg.apis.init_model`` gives a checkpoint without class metadata the
classes of the dataset whose class count matches the model's ``num_classes``
(150 -> ADE20K), but ``MMSegInferencer`` always falls back to Cityscapes, so
an ADE20K model would be drawn with Cityscapes' names and colours. We give
the inferencer init_model's rule. Checkpoints that carry ``dataset_meta``
(all that tools/train.py writes) are untouched.
"""
import sys


def _dataset_for(num_classes):
    from mmseg.utils import dataset_aliases, get_classes
    for name in dataset_aliases:
        if len(get_classes(name)) == num_classes:
            return name
    return 'cityscapes'


def patch_mmseg_inferencer():
    """Idempotently patch ``MMSegInferencer._load_weights_to_model``."""
    module = sys.modules.get('mmseg.apis.mmseg_inferencer')
    if module is None:
        return
    cls = module.MMSegInferencer
    original = cls._load_weights_to_model
    if getattr(original, '_mmpoolformer', False):
        return

    def load_weights(self, model, checkpoint, cfg):
        original(self, model, checkpoint, cfg)
        meta = (checkpoint or {}).get('meta', {})
        head = getattr(model, 'decode_head', None)
        if checkpoint is not None and head is not None and not (
                'dataset_meta' in meta or 'CLASSES' in meta):
            from mmseg.utils import get_classes, get_palette
            name = _dataset_for(head.num_classes)
            model.dataset_meta = dict(classes=get_classes(name),
                                      palette=get_palette(name))

    load_weights._mmpoolformer = True
    cls._load_weights_to_model = load_weights
