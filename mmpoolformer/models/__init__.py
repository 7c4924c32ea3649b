from .poolformer import PoolFormer, PoolFormerBlock

__all__ = ['PoolFormer', 'PoolFormerBlock']
