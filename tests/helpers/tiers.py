"""The unit tier: ``make test-fast`` runs ``-m "not slow and not
integration"``, what a change to the models, weights, configs or tools
usually breaks, in minutes. A test over every shipped config runs there on
one config per task (:data:`SAMPLE`); the full suite runs all of them."""
import os.path as osp

import pytest

#: Per task, the config the unit tier runs: PoolFormer-S12's (the paper's
#: model), and for UperNet (ConvFormer and CAFormer only) CAFormer-S18's,
#: whose attention stages the poolers lack.
SAMPLE = ('retinanet_poolformer_s12.py', 'mask_rcnn_poolformer_s12.py',
          'fpn_poolformer_s12.py', 'upernet_caformer_s18.py')


def per_config(paths):
    """``paths`` as pytest parameters named by file name; all but
    :data:`SAMPLE`'s are marked ``integration``."""
    return [pytest.param(p, id=osp.basename(p), marks=() if osp.basename(
        p) in SAMPLE else pytest.mark.integration) for p in paths]


def sample(values, keep, ids=None):
    """``values`` as pytest parameters (``ids`` their names); those
    ``keep(value)`` rejects are marked ``integration``. A tuple value is
    passed as the parameter's arguments, as in ``parametrize``."""
    ids = ids or [None] * len(values)
    return [pytest.param(*(v if isinstance(v, tuple) else (v, )), id=i,
                         marks=() if keep(v) else pytest.mark.integration)
            for v, i in zip(values, ids)]


#: The sizes the unit tier builds where a test runs every size: each
#: generation's smallest (the others are the same code, deeper or wider).
SMALLEST = ('s12', 's18')


def unit_family(row):
    """Whether a family's row of a per-family test runs in the unit tier:
    PoolFormer (v1, with its fast path) and PoolFormerV2 (the baselines'
    block, norms and StarReLU); the other mixers' families are integration
    (each takes tens of seconds on a CPU under autocast)."""
    family = row[0] if isinstance(row, tuple) else row
    return family in ('poolformer', 'poolformerv2')
