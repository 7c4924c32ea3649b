"""Loading every published checkpoint layout gives the reference features."""
import pytest
import torch
import torch.nn.functional as F

from mmpoolformer import PoolFormer
from mmpoolformer.models import fused as fused_module
from mmpoolformer.models import layers
from mmpoolformer.testing import (TimmFeatures, assert_features_equal,
                                  mmpretrain_poolformer, official_state,
                                  ours_from, randomise, timm_poolformer)
from helpers.checkout import run, tool
from mmpoolformer.weights import (CheckpointFormatError, convert,
                                  load_pretrained)
from helpers.tiers import SMALLEST, sample


# multiples of 4 (as mmdet/mmseg pad to), odd sizes at strides 8-32
X = torch.randn(2, 3, 96, 132, generator=torch.Generator().manual_seed(3))


def test_mmpretrain_dense_checkpoint(tmp_path):
    ref = mmpretrain_poolformer()
    path = tmp_path / 'mmpretrain.pth'
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in ref.state_dict().items()}}, path)
    with torch.no_grad():
        assert_features_equal(ours_from(PoolFormer, str(path))(X), ref(X))


def test_mmpretrain_classifier_drops_head_and_final_norm(tmp_path, capsys):
    ref = mmpretrain_poolformer(out_indices=(6, ))
    state = {f'backbone.{k}': v for k, v in ref.state_dict().items()}
    state['head.fc.weight'] = torch.randn(1000, 512)
    state['head.fc.bias'] = torch.randn(1000)
    path = tmp_path / 'cls.pth'
    torch.save({'state_dict': state}, path)
    ours = ours_from(PoolFormer, str(path), out_indices=(3, ))
    # the classifier norm is not an output norm: ours stays freshly built
    assert torch.equal(ours.norm3.weight, torch.ones(512))
    ref.norm6.weight.data.fill_(1)
    ref.norm6.bias.data.zero_()
    with torch.no_grad():
        assert_features_equal(ours(X), ref(X))


def test_official_checkpoint(tmp_path):
    ref = mmpretrain_poolformer(fresh_norms=True)
    path = tmp_path / 'poolformer_s12.pth.tar'
    torch.save(official_state(ref), path)
    with torch.no_grad():
        assert_features_equal(ours_from(PoolFormer, str(path))(X), ref(X))


@pytest.mark.parametrize('arch', sample(['s12', 'm36'],
                                        lambda a: a in SMALLEST))
def test_timm_checkpoint(tmp_path, arch):
    ref = timm_poolformer(arch)
    path = tmp_path / 'timm.pth'
    torch.save(ref.state_dict(), path)
    with torch.no_grad():
        expected = TimmFeatures(ref)(X)
        assert_features_equal(ours_from(PoolFormer, str(path), arch)(X),
                              expected)


def test_wrong_token_mixer_is_caught(tmp_path, monkeypatch):
    """The comparison above has teeth: a pool that counts the zero padding
    (a border-only error) fails it, in the fused and the plain block."""
    ref = mmpretrain_poolformer()
    path = tmp_path / 'mmpretrain.pth'
    torch.save({f'backbone.{k}': v for k, v in ref.state_dict().items()},
               path)

    def with_padding(x, size, out=None):
        pooled = F.avg_pool2d(x, size, 1, size // 2, count_include_pad=True)
        return pooled if out is None else out.copy_(pooled)

    monkeypatch.setattr(fused_module, 'avg_pool', with_padding)
    monkeypatch.setattr(layers.Pooling, 'forward',
                        lambda self, x: with_padding(x, self.pool_size) - x)
    for fused in (True, False):
        ours = ours_from(PoolFormer, str(path))
        ours.fused = fused
        with torch.no_grad(), pytest.raises(AssertionError):
            assert_features_equal(ours(X), ref(X))


def test_own_and_detector_checkpoints(tmp_path):
    src = randomise(PoolFormer('s12'))
    plain = tmp_path / 'own.pth'
    torch.save(src.state_dict(), plain)
    det = tmp_path / 'det.pth'
    state = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.randn(256, 128, 1, 1)
    torch.save({'meta': {'epoch': 1}, 'state_dict': state}, det)
    with torch.no_grad():
        expected = src.eval()(X)
        assert_features_equal(ours_from(PoolFormer, str(plain))(X), expected)
        # a RetinaNet backbone (stages 1-3) drops the stride-4 norm
        assert_features_equal(
            ours_from(PoolFormer, str(det), out_indices=(1, 2, 3))(X),
            expected[1:])


def test_convert_tool_roundtrip(tmp_path):
    ref = mmpretrain_poolformer()
    src = tmp_path / 'mmpretrain.pth'
    torch.save({f'backbone.{k}': v for k, v in ref.state_dict().items()}, src)
    dst = tmp_path / 'converted.pth'
    out = run(tool('convert_weights.py', src, dst))
    assert 'mmpretrain layout' in out.stdout
    state = torch.load(dst)
    assert 'stem.weight' in state and 'norm3.weight' in state
    with torch.no_grad():
        assert_features_equal(ours_from(PoolFormer, str(dst))(X), ref(X))


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    path = tmp_path / 'm36.pth'
    torch.save(PoolFormer('m36').state_dict(), path)
    with pytest.raises(CheckpointFormatError,
                       match=r'stem\.weight: checkpoint \(96, 3, 7, 7\) vs '
                       r'model \(64, 3, 7, 7\)'):
        load_pretrained(PoolFormer('s12'), str(path), convert)


def test_missing_blocks_are_an_error(tmp_path):
    path = tmp_path / 's12.pth'
    torch.save(PoolFormer('s12').state_dict(), path)
    with pytest.raises(CheckpointFormatError,
                       match=r'missing from checkpoint.*stages\.0\.blocks\.2'):
        load_pretrained(PoolFormer('s24'), str(path), convert)
    path = tmp_path / 's24.pth'
    torch.save(PoolFormer('s24').state_dict(), path)
    with pytest.raises(CheckpointFormatError, match=r'not in the model'):
        load_pretrained(PoolFormer('s12'), str(path), convert)


def test_missing_and_unreadable_files(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_pretrained(PoolFormer('s12'), missing, convert)
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointFormatError, match='junk.pth'):
        load_pretrained(PoolFormer('s12'), str(junk), convert)
    other = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(1)}, other)
    with pytest.raises(CheckpointFormatError, match=r'Unrecognised.*conv1'):
        load_pretrained(PoolFormer('s12'), str(other), convert)


def test_partly_written_file_is_an_error(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save(PoolFormer('s12').state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointFormatError, match='cut.pth'):
        load_pretrained(PoolFormer('s12'), str(path), convert)


# -- the load paths agree ------------------------------------------------------

@pytest.fixture
def log(capsys, tmp_path):
    """A function returning what was printed and logged since its last
    call: the log file of the current MMLogger, new at each call (a logger
    says each warning once), then the captured stdout (mmengine's reports
    of unmatched keys are prints)."""
    import uuid
    from mmengine.logging import MMLogger
    files = []

    def read():
        text = files[-1].read_text() if files else ''
        files.append(tmp_path / f'log{len(files)}.txt')
        MMLogger.get_instance(f'test-{uuid.uuid4()}', log_file=str(files[-1]))
        return text + capsys.readouterr().out

    read()
    return read


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    """(path, content) of an official ImageNet file: no output norms."""
    path = tmp_path_factory.mktemp('imagenet') / 'poolformer_s12.pth.tar'
    state = official_state(mmpretrain_poolformer())
    torch.save(state, path)
    return str(path), state


def test_imagenet_file_same_through_every_load_path(imagenet, log):
    """init_cfg, mmengine's load_checkpoint and torch's load_state_dict
    (strict=False) load every block and leave the output norms at their
    init, naming them; with strict=True the norms are missing keys."""
    from mmengine.runner import load_checkpoint
    path, state = imagenet
    expected = ours_from(PoolFormer, path).state_dict()
    norms = sorted(k for k in expected if k.startswith('norm'))
    assert norms and all(torch.equal(expected[k], PoolFormer('s12')
                                     .state_dict()[k]) for k in norms)
    via_mmengine = PoolFormer('s12')
    via_torch = PoolFormer('s12')
    for load in (lambda: load_checkpoint(via_mmengine, path, strict=False),
                 lambda: via_torch.load_state_dict(state, strict=False)):
        log()
        result = load()
        out = log()
        assert "output norms not in the file, left at their init: " \
            "['norm0.bias', 'norm0.weight'" in out
        assert "dropped ['head.bias', 'head.weight', 'norm.bias'" in out
    assert sorted(result.missing_keys) == norms
    assert result.unexpected_keys == []
    for model in (via_mmengine, via_torch):
        got = model.state_dict()
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    with pytest.raises(RuntimeError, match=r'norm0\.weight'):
        PoolFormer('s12').load_state_dict(state)
    with pytest.raises(RuntimeError, match=r'norm0\.weight'):
        load_checkpoint(PoolFormer('s12'), path, strict=True)


class Detector(torch.nn.Module):
    """A PoolFormer backbone, filled from ``path`` by its init_cfg if given,
    and a neck."""

    def __init__(self, path=None):
        super().__init__()
        init = None if path is None else dict(type='Pretrained',
                                              checkpoint=path)
        self.backbone = PoolFormer('s12', out_indices=(1, 2, 3),
                                   init_cfg=init)
        self.backbone.init_weights()
        self.neck = torch.nn.Conv2d(128, 8, 1)


def test_load_from_keeps_the_init_cfg_backbone(imagenet, tmp_path, log):
    """A whole-model file with another architecture's backbone, or none:
    the backbone filled by init_cfg keeps its weights, the neck loads, and
    the log names what was skipped. strict=True stays strict."""
    from mmengine.runner import load_checkpoint
    path, _ = imagenet
    neck = torch.nn.Conv2d(128, 8, 1).state_dict()
    foreign = {'backbone.conv1.weight': torch.randn(64, 3, 7, 7),
               'backbone.layer1.0.conv1.weight': torch.randn(64, 64, 1, 1)}
    for backbone in (foreign, {}):
        file = str(tmp_path / 'coco.pth')
        torch.save(dict(meta={}, state_dict=dict(
            backbone, **{f'neck.{k}': v for k, v in neck.items()})), file)
        model = Detector(path)
        before = {k: v.clone() for k, v in
                  model.backbone.state_dict().items()}
        log()
        load_checkpoint(model, file)
        out = log()
        assert f'PoolFormer keeps the weights its init_cfg loaded from ' \
            f'{path}' in out
        if backbone:
            assert "skipped the checkpoint's 2 tensors under 'backbone.' " \
                "(['backbone.conv1.weight', 'backbone.layer1.0.conv1." \
                "weight'] ...), weights of another architecture" in out
            # mmengine's own report names them too
            assert 'unexpected key in source state_dict: backbone.conv1.' \
                'weight' in out
        else:
            assert "no tensor under 'backbone.'" in out
        after = model.backbone.state_dict()
        assert all(torch.equal(after[k], before[k]) for k in before)
        assert torch.equal(model.neck.weight, neck['weight'])
        with pytest.raises(RuntimeError, match=r'backbone\.stem\.weight'):
            load_checkpoint(Detector(path), file, strict=True)
        # nothing filled the backbone: it would stay random
        with pytest.raises(CheckpointFormatError,
                           match=r'another architecture|no tensor under'):
            load_checkpoint(Detector(), file)


def test_partial_backbone_stays_an_error_after_init_cfg(imagenet, tmp_path):
    """Our own layout with a block missing is no other architecture: an
    error, whatever init_cfg loaded before."""
    from mmengine.runner import load_checkpoint
    path, _ = imagenet
    model = Detector(path)
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith('backbone.stages.1.blocks.1.')}
    file = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict=state), file)
    with pytest.raises(CheckpointFormatError,
                       match=r"missing from checkpoint: \['backbone\.stages"
                       r"\.1\.blocks\.1\."):
        load_checkpoint(model, file)
