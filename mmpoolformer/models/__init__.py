from .metaformer import (CAFormer, ConvFormer, IdentityFormer, MetaFormer,
                         PoolFormerV2, RandFormer)
from .poolformer import PoolFormer, PoolFormerBlock

__all__ = ['PoolFormer', 'PoolFormerBlock', 'MetaFormer', 'PoolFormerV2',
           'ConvFormer', 'CAFormer', 'IdentityFormer', 'RandFormer']
