"""PoolFormer for mmdet 3, mmsegmentation 1 and mmpretrain 1.

Importing this package registers the ``PoolFormer`` backbone and lets torch's
safe loader read the checkpoints mmengine writes (see :mod:`.safe_load`).
"""
from . import hooks, safe_load
from .models import PoolFormer, PoolFormerBlock

__version__ = '0.1.0'
__all__ = ['hooks', 'PoolFormer', 'PoolFormerBlock', '__version__']

safe_load.allow_mmengine_checkpoints()
