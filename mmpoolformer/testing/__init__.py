"""Helpers for tests and benchmarks (the ``mmdet.testing`` idiom): the
checkout and its tools, the synthetic shapes dataset and configs on it, and
reference implementations with shared weights. Nothing in the library
imports this package."""
from .checkout import REPO, TOOLS, checkout_env, run, tool
from .configs import shapes_config
from .reference import (TimmFeatures, assert_close, assert_features_equal,
                        assert_frozen, assert_same_training_step,
                        mmpretrain_poolformer, official_metaformer,
                        official_metaformer_state, official_state,
                        ours_from, randomise, timm_metaformer,
                        timm_poolformer)
from .synthetic import make_dataset

__all__ = ['REPO', 'TOOLS', 'checkout_env', 'run', 'tool', 'shapes_config',
           'TimmFeatures', 'assert_close', 'assert_features_equal',
           'assert_frozen', 'assert_same_training_step',
           'mmpretrain_poolformer', 'official_metaformer',
           'official_metaformer_state', 'official_state', 'ours_from',
           'randomise', 'timm_metaformer', 'timm_poolformer', 'make_dataset']
