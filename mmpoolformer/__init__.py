"""PoolFormer and the MetaFormer baselines (PoolFormerV2, ConvFormer, CAFormer,
IdentityFormer, RandFormer) as backbones for mmdet 3, mmsegmentation 1 and
mmpretrain 1.

Importing this package registers the backbones and the engine's hooks, and
applies mmpoolformer's fixes to other libraries once (see :mod:`.compat`).
"""
from . import compat, engine
from .models import (CAFormer, ConvFormer, IdentityFormer, MetaFormer,
                     PoolFormer, PoolFormerBlock, PoolFormerV2, RandFormer)
from .version import __version__

__all__ = [
    'engine', 'PoolFormer', 'PoolFormerBlock', 'MetaFormer', 'PoolFormerV2',
    'ConvFormer', 'CAFormer', 'IdentityFormer', 'RandFormer', '__version__'
]

compat.apply()
