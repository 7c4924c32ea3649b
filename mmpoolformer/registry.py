"""Registries of mmpoolformer.

``MODELS`` is a child of mmengine's root registry with scope ``mmpoolformer``,
so ``type='mmpoolformer.PoolFormer'`` builds from any OpenMMLab library's
registry. Backbones are also registered in the root registry itself, so a
plain ``type='PoolFormer'`` resolves from mmdet and mmseg, which inherit the
root's entries. mmpretrain has a ``PoolFormer`` of its own that its scope finds
first; there, use the scoped name. ``OPTIM_WRAPPER_CONSTRUCTORS`` follows the
same pattern for the engine's optimizer-wrapper constructors.
"""
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as ROOT_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

MODELS = Registry('model', parent=ROOT_MODELS, scope='mmpoolformer')
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=ROOT_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmpoolformer')


def register_everywhere(cls):
    """Register ``cls`` in our scoped registry and in mmengine's root."""
    MODELS.register_module(module=cls)
    ROOT_MODELS.register_module(module=cls)
    return cls
