"""Every way users hand a backbone its weights and settings either works or
says why: init_cfg as a dict or a list, ``prefix``, mmseg's ``pretrained=``,
range-checked numbers, empty batches."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmpoolformer import PoolFormer
from helpers.checkout import REPO
from mmpoolformer.testing import (assert_features_equal, mmpretrain_poolformer,
                                  official_state, randomise)
from mmpoolformer.weights import CheckpointFormatError

X = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope='module')
def official(tmp_path_factory):
    """The authors' S12 ImageNet file and the features it must give."""
    ref = mmpretrain_poolformer(fresh_norms=True)
    path = tmp_path_factory.mktemp('ckpt') / 'poolformer_s12.pth.tar'
    torch.save(official_state(ref), path)
    with torch.no_grad():
        return str(path), ref(X)


def features(model):
    model.init_weights()
    with torch.no_grad():
        return model.eval()(X)


def pretrained(path, **kwargs):
    return dict(type='Pretrained', checkpoint=path, **kwargs)


def test_init_cfg_as_dict_or_list(official):
    path, ref = official
    for init_cfg in (pretrained(path), [pretrained(path)]):
        assert_features_equal(features(PoolFormer(init_cfg=init_cfg)), ref)


def test_other_init_cfg_entries_still_apply(official):
    """A Constant entry initialises what the checkpoint does not hold (the
    new output norms); the checkpoint wins where it holds weights."""
    path, ref = official
    model = PoolFormer(init_cfg=[
        dict(type='Constant', layer='GroupNorm', val=2., bias=0.),
        pretrained(path)])
    outs = features(model)
    assert torch.equal(model.norm0.weight, torch.full((64, ), 2.))
    assert not torch.equal(model.stages[0].blocks[0].norm1.weight,
                           torch.full((64, ), 2.))
    assert_features_equal([o / 2 for o in outs], ref)
    # without Pretrained, a list is mmengine's as usual
    model = PoolFormer(init_cfg=[dict(type='Constant', layer='Conv2d',
                                      val=0.25, bias=0.)])
    model.init_weights()
    assert torch.equal(model.stem.weight, torch.full_like(model.stem.weight,
                                                          .25))


def test_prefix_selects_the_backbone(official, tmp_path):
    path, ref = official
    nested = tmp_path / 'nested.pth'
    state = torch.load(path)
    torch.save({f'teacher.encoder.{k}': v for k, v in state.items()} |
               {'teacher.head2.weight': torch.zeros(3)}, nested)
    model = PoolFormer(init_cfg=[pretrained(str(nested),
                                            prefix='teacher.encoder.')])
    assert_features_equal(features(model), ref)
    model = PoolFormer(init_cfg=pretrained(str(nested), prefix='student.'))
    with pytest.raises(CheckpointFormatError,
                       match=r"nested.pth.*prefix 'student\.'"):
        model.init_weights()


def test_partial_checkpoint_is_an_error_in_list_form(tmp_path):
    path = tmp_path / 's12.pth'
    torch.save(PoolFormer('s12').state_dict(), path)
    model = PoolFormer('s24', init_cfg=[pretrained(str(path))])
    with pytest.raises(CheckpointFormatError, match='missing from checkpoint'):
        model.init_weights()


@pytest.mark.parametrize('init_cfg, match', [
    ([dict(type='Pretrained', checkpoint='a.pth'),
      dict(type='Pretrained', checkpoint='b.pth')], '2 Pretrained entries'),
    (dict(type='Pretrained'), 'takes "checkpoint"'),
    (dict(type='Pretrained', checkpoint='a.pth', strict=False),
     'takes "checkpoint"'),
])
def test_bad_init_cfg(init_cfg, match):
    with pytest.raises(ValueError, match=match):
        PoolFormer(init_cfg=init_cfg)
    with pytest.raises(TypeError, match='init_cfg must be a dict'):
        PoolFormer(init_cfg='a.pth')


def test_pretrained_argument(official):
    path, ref = official
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = PoolFormer(pretrained=path)
    assert_features_equal(features(model), ref)
    with pytest.raises(ValueError, match=r"pretrained='a\.pth' and "
                       r"init_cfg=.*b\.pth.*both set"):
        PoolFormer(pretrained='a.pth', init_cfg=pretrained('b.pth'))


def test_mmseg_model_pretrained(official):
    """mmseg's habit: ``model.pretrained`` (EncoderDecoder hands it to the
    backbone)."""
    from mmengine.model import revert_sync_batchnorm
    from mmseg.registry import MODELS
    path, ref = official
    cfg = Config.fromfile(f'{REPO}/configs/segmentation/fpn_poolformer_s12.py')
    cfg.model.pretrained = path
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmseg')
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    with torch.no_grad():
        assert_features_equal(model.backbone.eval()(X), ref)


@pytest.mark.parametrize('kwargs, match', [
    (dict(drop_path_rate=1.5), r'drop_path_rate.*\[0, 1\).*1\.5'),
    (dict(drop_path_rate=-0.1), r'drop_path_rate.*-0\.1'),
    (dict(drop_rate=1.0), r'drop_rate.*\[0, 1\).*1\.0'),
    (dict(mlp_ratio=0), r'mlp_ratio.*\(0, inf\).*0'),
    (dict(mlp_ratio='4'), r"mlp_ratio.*'4'"),
    (dict(layer_scale_init_value=-1e-5), r'layer_scale_init_value.*-1e-05'),
    (dict(layer_scale_init_value=float('inf')),
     r'layer_scale_init_value.*inf'),
    (dict(arch=dict(depths=[1] * 4, dims=[8] * 4,
                    layer_scale_init_value=0)), r'layer_scale_init_value'),
    (dict(in_channels=0), r'in_channels.*0'),
    (dict(in_channels=2.5), r'in_channels.*2\.5'),
])
def test_numbers_are_range_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PoolFormer(**kwargs)


@pytest.mark.parametrize('fused', [True, 'auto', False])
def test_empty_batch(fused):
    model = PoolFormer('s12', fused=fused, drop_path_rate=0.1)
    for training in (True, False):
        x = torch.randn(0, 3, 64, 96, requires_grad=training)
        with torch.set_grad_enabled(training):
            outs = model.train(training)(x)
        assert [o.shape for o in outs] == [
            (0, 64, 16, 24), (0, 128, 8, 12), (0, 320, 4, 6), (0, 512, 2, 3)]
        if training:
            sum(o.sum() for o in outs).backward()
            assert x.grad.shape == x.shape


@pytest.mark.parametrize('name', ['PoolFormerV2', 'ConvFormer', 'CAFormer',
                                  'IdentityFormer', 'RandFormer'])
def test_family_habits(name, tmp_path):
    """The same habits for one member of each MetaFormer family: init_cfg
    as a list, ``pretrained=``, a bad value, an empty batch."""
    import mmpoolformer
    cls = getattr(mmpoolformer, name)
    torch.manual_seed(0)
    src = randomise(cls()).eval()
    path = str(tmp_path / 'weights.pth')
    torch.save(src.state_dict(), path)
    x = torch.randn(1, 3, 224, 224)  # RandFormer's own size
    with torch.no_grad():
        ref = src(x)
    model = cls(init_cfg=[dict(type='Kaiming', layer='Conv2d'),
                          pretrained(path)])
    model.init_weights()
    with torch.no_grad():
        assert_features_equal(model.eval()(x), ref)
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = cls(pretrained=path)
    model.init_weights()
    with torch.no_grad():
        assert_features_equal(model.eval()(x), ref)
    with pytest.raises(ValueError, match=r'drop_path_rate.*1\.5'):
        cls(drop_path_rate=1.5)
    outs = cls().train()(torch.randn(0, 3, 224, 224))
    assert [tuple(o.shape) for o in outs] == [
        (0, c, 224 // s, 224 // s)
        for c, s in zip(src.dims, (4, 8, 16, 32))]
