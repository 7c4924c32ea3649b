"""Helpers for tests that work from an installed package (the
``mmdet.testing`` idiom): reference implementations with shared weights,
random batches for the stock heads and the precision measurements. Nothing
in the library imports this package; the checkout's own helpers are in
``tests/helpers``."""
from .reference import (TimmFeatures, assert_close, assert_features_equal,
                        assert_frozen, assert_same_training_step,
                        mmpretrain_poolformer, official_metaformer,
                        official_metaformer_state, official_state,
                        ours_from, randomise, timm_metaformer,
                        timm_poolformer)

__all__ = ['TimmFeatures', 'assert_close', 'assert_features_equal',
           'assert_frozen', 'assert_same_training_step',
           'mmpretrain_poolformer', 'official_metaformer',
           'official_metaformer_state', 'official_state', 'ours_from',
           'randomise', 'timm_metaformer', 'timm_poolformer']
