"""Datasets of mmpoolformer's own: the demo's synthetic shapes."""
from .shapes import (PALETTE, SEG_CLASSES, SEG_PALETTE, SHAPES,
                     make_dataset)

__all__ = ['SHAPES', 'SEG_CLASSES', 'PALETTE', 'SEG_PALETTE', 'make_dataset']
