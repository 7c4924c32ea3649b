"""Loading every published checkpoint layout gives the reference features."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmpoolformer import PoolFormer
from mmpoolformer.models import fused as fused_module
from mmpoolformer.models import poolformer as pf_module
from mmpoolformer.weights import CheckpointFormatError, load_pretrained

TOOLS = os.path.join(os.path.dirname(__file__), '..', 'tools')


def randomise(model, seed=0):
    """Layer scales and norm affines of order 1: at the 1e-5 default a wrong
    mixer or MLP would change the output by less than the tolerance."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'layer_scale' in name or 'norm' in name or '.scale' in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + 0.5)
    return model


def mmpretrain_model(arch='s12', out_indices=(0, 2, 4, 6)):
    from mmpretrain.models.backbones import PoolFormer as MMPretrainPF
    model = randomise(MMPretrainPF(arch, out_indices=list(out_indices)))
    model.eval()  # mmpretrain's train() returns None: no chaining
    return model


def timm_stage_outputs(model, x):
    outs, x = [], model.stem(x)
    for stage in model.stages:
        x = stage(x)
        outs.append(x)
    return outs


def plain_norm(x):
    """A freshly initialised output norm: GroupNorm(1), weight 1, bias 0."""
    return F.group_norm(x, 1, eps=1e-5)


def ours_from(path, arch='s12', out_indices=(0, 1, 2, 3)):
    model = PoolFormer(arch, out_indices=out_indices,
                       init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    return model.eval()


# multiples of 4 (as mmdet/mmseg pad to), odd sizes at strides 8-32
X = torch.randn(2, 3, 96, 132, generator=torch.Generator().manual_seed(3))


def assert_features_equal(ours, ref, tol=1e-5):
    """Equal to ``tol`` of each output's scale. fp32 is at its floor here:
    the reference itself moves by ~4e-6 of the scale (3e-5 absolute at
    |out| ~ 8) when its input is channels-last instead of NCHW."""
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        err = (a - b).abs().max().item()
        assert err <= tol * max(1.0, b.abs().max().item()), err


def test_mmpretrain_dense_checkpoint(tmp_path):
    ref = mmpretrain_model()
    path = tmp_path / 'mmpretrain.pth'
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in ref.state_dict().items()}}, path)
    with torch.no_grad():
        assert_features_equal(ours_from(str(path))(X), ref(X))


def test_mmpretrain_classifier_drops_head_and_final_norm(tmp_path, capsys):
    ref = mmpretrain_model(out_indices=(6, ))
    state = {f'backbone.{k}': v for k, v in ref.state_dict().items()}
    state['head.fc.weight'] = torch.randn(1000, 512)
    state['head.fc.bias'] = torch.randn(1000)
    path = tmp_path / 'cls.pth'
    torch.save({'state_dict': state}, path)
    ours = ours_from(str(path), out_indices=(3, ))
    # the classifier norm is not an output norm: ours stays freshly built
    assert torch.equal(ours.norm3.weight, torch.ones(512))
    ref.norm6.weight.data.fill_(1)
    ref.norm6.bias.data.zero_()
    with torch.no_grad():
        assert_features_equal(ours(X), ref(X))


def official_state(ref):
    """The authors' file: mmpretrain's names without prefix, a classifier
    ``norm`` and ``head``, no per-output norms."""
    state = {k: v for k, v in ref.state_dict().items()
             if not k.startswith('norm')}
    state.update({'norm.weight': torch.randn(512), 'norm.bias':
                  torch.randn(512), 'head.weight': torch.randn(1000, 512),
                  'head.bias': torch.randn(1000)})
    return state


def test_official_checkpoint(tmp_path):
    ref = mmpretrain_model()
    for i in (0, 2, 4, 6):
        getattr(ref, f'norm{i}').reset_parameters()
    path = tmp_path / 'poolformer_s12.pth.tar'
    torch.save(official_state(ref), path)
    with torch.no_grad():
        assert_features_equal(ours_from(str(path))(X), ref(X))


@pytest.mark.parametrize('arch', ['s12', 'm36'])
def test_timm_checkpoint(tmp_path, arch):
    import timm
    ref = randomise(timm.create_model(f'poolformer_{arch}')).eval()
    path = tmp_path / 'timm.pth'
    torch.save(ref.state_dict(), path)
    with torch.no_grad():
        expected = [plain_norm(o) for o in timm_stage_outputs(ref, X)]
        assert_features_equal(ours_from(str(path), arch)(X), expected)


def test_wrong_token_mixer_is_caught(tmp_path, monkeypatch):
    """The comparison above has teeth: a pool that counts the zero padding
    (a border-only error) fails it, in the fused and the plain block."""
    ref = mmpretrain_model()
    path = tmp_path / 'mmpretrain.pth'
    torch.save({f'backbone.{k}': v for k, v in ref.state_dict().items()},
               path)
    monkeypatch.setattr(fused_module, 'avg_pool', lambda x, size, out=None:
                        F.avg_pool2d(x, size, 1, size // 2,
                                     count_include_pad=True))
    for fused in (True, False):
        ours = ours_from(str(path))
        for block in ours.modules():
            if isinstance(block, pf_module.PoolFormerBlock):
                block.fused = fused
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
        assert_features_equal(ours_from(str(plain))(X), expected)
        # a RetinaNet backbone (stages 1-3) drops the stride-4 norm
        assert_features_equal(
            ours_from(str(det), out_indices=(1, 2, 3))(X), expected[1:])


def test_convert_tool_roundtrip(tmp_path):
    ref = mmpretrain_model()
    src = tmp_path / 'mmpretrain.pth'
    torch.save({f'backbone.{k}': v for k, v in ref.state_dict().items()}, src)
    dst = tmp_path / 'converted.pth'
    out = subprocess.run(
        [sys.executable, os.path.join(TOOLS, 'convert_weights.py'),
         str(src), str(dst)], capture_output=True, text=True, check=True)
    assert 'mmpretrain layout' in out.stdout
    state = torch.load(dst)
    assert 'stem.weight' in state and 'norm3.weight' in state
    with torch.no_grad():
        assert_features_equal(ours_from(str(dst))(X), ref(X))


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    path = tmp_path / 'm36.pth'
    torch.save(PoolFormer('m36').state_dict(), path)
    with pytest.raises(CheckpointFormatError,
                       match=r'stem\.weight: checkpoint \(96, 3, 7, 7\) vs '
                       r'model \(64, 3, 7, 7\)'):
        load_pretrained(PoolFormer('s12'), str(path))


def test_missing_blocks_are_an_error(tmp_path):
    path = tmp_path / 's12.pth'
    torch.save(PoolFormer('s12').state_dict(), path)
    with pytest.raises(CheckpointFormatError,
                       match=r'missing from checkpoint.*stages\.0\.blocks\.2'):
        load_pretrained(PoolFormer('s24'), str(path))
    path = tmp_path / 's24.pth'
    torch.save(PoolFormer('s24').state_dict(), path)
    with pytest.raises(CheckpointFormatError, match=r'not in the model'):
        load_pretrained(PoolFormer('s12'), str(path))


def test_missing_and_unreadable_files(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_pretrained(PoolFormer('s12'), missing)
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointFormatError, match='junk.pth'):
        load_pretrained(PoolFormer('s12'), str(junk))
    other = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(1)}, other)
    with pytest.raises(CheckpointFormatError, match=r'Unrecognised.*conv1'):
        load_pretrained(PoolFormer('s12'), str(other))


def test_partly_written_file_is_an_error(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save(PoolFormer('s12').state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointFormatError, match='cut.pth'):
        load_pretrained(PoolFormer('s12'), str(path))
