"""Helpers for tests and benchmarks (the ``mmdet.testing`` idiom): the
synthetic shapes dataset and reference implementations with shared weights.
Nothing in the library imports this package."""
from .reference import (TimmFeatures, assert_close, mmpretrain_poolformer,
                        official_metaformer, official_metaformer_state,
                        official_state, randomise, timm_metaformer,
                        timm_poolformer)
from .synthetic import make_dataset

__all__ = ['TimmFeatures', 'assert_close', 'mmpretrain_poolformer',
           'official_metaformer', 'official_metaformer_state',
           'official_state', 'randomise', 'timm_metaformer',
           'timm_poolformer', 'make_dataset']
