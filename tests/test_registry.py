"""``import mmpoolformer`` makes the backbone buildable from every library."""
import sys

import pytest
import torch
from mmengine.registry import DefaultScope

from mmpoolformer import PoolFormer
from helpers.checkout import run


def _registries():
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG
    return dict(mmdet=DET, mmseg=SEG, mmpretrain=CLS)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_plain_name_builds_in_det_and_seg(scope):
    registry = _registries()[scope]
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type='PoolFormer', arch='s12',
                                    out_indices=(1, 2, 3)))
    assert type(model) is PoolFormer
    assert len(model(torch.randn(1, 3, 64, 64))) == 3


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_scoped_name_builds_everywhere(scope):
    registry = _registries()[scope]
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type='mmpoolformer.PoolFormer'))
    assert type(model) is PoolFormer


def test_mmpretrain_keeps_its_own_poolformer():
    from mmpretrain.models.backbones import PoolFormer as MMPretrainPF
    registry = _registries()['mmpretrain']
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        assert registry.get('PoolFormer') is MMPretrainPF


# A fresh interpreter: here mmpoolformer is imported already. The plain
# name: a scoped one ('mmpoolformer.PoolFormer') makes mmengine import the
# scope's package by itself.
CUSTOM_IMPORTS_CHILD = '''
import sys
from mmengine.config import Config
from mmengine.registry import MODELS
assert 'mmpoolformer' not in sys.modules
cfg = Config.fromfile(sys.argv[1])
model = MODELS.build(cfg.model)
print(type(model).__module__, tuple(model.depths))
'''


@pytest.mark.parametrize('imports', [True, False])
def test_custom_imports_registers(tmp_path, imports):
    """A config's ``custom_imports`` alone makes the backbone buildable
    from mmengine's registry (and without it, it is not)."""
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(
        ("custom_imports = dict(imports=['mmpoolformer'], "
         "allow_failed_imports=False)\n" if imports else '') +
        "model = dict(type='PoolFormer', arch='s24')\n")
    proc = run([sys.executable, '-c', CUSTOM_IMPORTS_CHILD, str(cfg_file)],
               check=False)
    if imports:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.split() == ['mmpoolformer.models.poolformer',
                                       '(4,', '4,', '12,', '4)']
    else:
        assert proc.returncode != 0
        assert 'PoolFormer is not in the' in proc.stderr


def test_mmpretrain_classifier_with_our_backbone():
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(
            dict(type='ImageClassifier',
                 backbone=dict(type='mmpoolformer.PoolFormer', arch='s12',
                               out_indices=(3, )),
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=10,
                           in_channels=512,
                           loss=dict(type='CrossEntropyLoss'))))
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10)
