"""The MetaFormer baselines: timm's and the authors' numbers from their
checkpoints, the paper's parameter counts, the dense-backbone contract."""
import math
import os
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.layers import LayerNorm2d
from timm.models.metaformer import checkpoint_filter_fn

from mmpoolformer import (CAFormer, ConvFormer, IdentityFormer, MetaFormer,
                          PoolFormer, PoolFormerV2, RandFormer)
from mmpoolformer.models import layers
from mmpoolformer.testing import (TimmFeatures, assert_close,
                                  assert_features_equal, assert_frozen,
                                  assert_same_training_step,
                                  official_metaformer,
                                  official_metaformer_state, ours_from,
                                  randomise, timm_metaformer, timm_poolformer)
from helpers.checkout import run, tool
from mmpoolformer.weights import CheckpointFormatError

FAMILIES = dict(poolformerv2=PoolFormerV2, convformer=ConvFormer,
                caformer=CAFormer, identityformer=IdentityFormer,
                randformer=RandFormer)
X = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))


def norm_of(cls):
    return cls.arch_settings[cls.default_arch]['norm']


def timm_features(model, cls):
    """timm's stages through the fresh output norms ``cls`` has by
    default."""
    if norm_of(cls) == 'sample':
        return TimmFeatures(model)
    return TimmFeatures(model, lambda c: LayerNorm2d(c, eps=1e-6))


def mixers_of(cls):
    return cls.arch_settings[cls.default_arch]['token_mixers']


# the smallest arch of each family, and deeper ones
TIMM_MODELS = ['poolformerv2_s12', 'convformer_s18', 'caformer_s18',
               'poolformerv2_s24', 'caformer_s36']


def split(name):
    family, arch = name.split('_')
    return FAMILIES[family], arch


@pytest.mark.parametrize('name', TIMM_MODELS)
def test_timm_and_official_checkpoints(tmp_path, name):
    cls, arch = split(name)
    ref = timm_metaformer(name)
    with torch.no_grad():
        expected = timm_features(ref, cls)(X)
    timm_path = tmp_path / 'timm.pth'
    torch.save(ref.state_dict(), timm_path)
    official = official_metaformer_state(ref.state_dict())
    official_path = tmp_path / 'official.pth'
    torch.save(official, official_path)
    with torch.no_grad():
        for path in (timm_path, official_path):
            assert_features_equal(ours_from(cls, str(path), arch)(X),
                                  expected)


def test_official_writer_is_what_timm_reads():
    """The official-layout file the tests write converts back to the very
    tensors by timm's own filter (so it is the authors' layout)."""
    import timm
    ref = timm_metaformer('caformer_s18')
    fresh = timm.create_model('caformer_s18')
    fresh.load_state_dict(checkpoint_filter_fn(
        official_metaformer_state(ref.state_dict()), fresh))
    for key, value in ref.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


@pytest.mark.parametrize('layout', ['timm', 'official'])
def test_safetensors_file_and_url(tmp_path, monkeypatch, layout):
    ref = timm_metaformer('caformer_s18')
    state = ref.state_dict()
    if layout == 'official':
        state = official_metaformer_state(state)
    path = tmp_path / 'model.safetensors'
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with torch.no_grad():
        expected = timm_features(ref, CAFormer)(X)
        assert_features_equal(
            ours_from(CAFormer, str(path), 's18')(X), expected)
        # a URL is downloaded into torch's hub cache, named by its path
        monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'home'))
        assert_features_equal(
            ours_from(CAFormer, f'file://{path}', 's18')(X), expected)
    cached = (tmp_path / 'home' / 'hub' / 'checkpoints').iterdir()
    assert any(p.name.endswith('model.safetensors') for p in cached)


@pytest.mark.parametrize('name', ['convformer_s18', 'caformer_s18',
                                  'poolformerv2_s12'])
def test_authors_forward_restated_matches_timm(name):
    """The functional restatement of the authors' code used for
    IdentityFormer and RandFormer below agrees with timm's port."""
    cls, arch = split(name)
    ref = timm_metaformer(name)
    feats = timm_features(ref, cls)
    with torch.no_grad():
        restated = official_metaformer(
            official_metaformer_state(ref.state_dict()), X, mixers_of(cls),
            norm_of(cls))
        assert_features_equal([n(o) for n, o in zip(feats.norms, restated)],
                              feats(X))


@pytest.mark.parametrize('cls', [IdentityFormer, RandFormer])
def test_identity_and_randformer_match_authors_code(tmp_path, cls):
    # random mixing fixes the size: 64x64 here
    src = randomise(cls('s12', input_size=64))
    official = official_metaformer_state(src.state_dict())
    path = tmp_path / 'official.pth'
    torch.save(official, path)
    x = X[:, :, :, :64]
    ours = ours_from(cls, str(path), 's12', input_size=64)
    with torch.no_grad():
        restated = official_metaformer(official, x, mixers_of(cls), 'sample')
        assert_features_equal(ours(x), [F.group_norm(o, 1) for o in restated])


def test_wrong_mixers_are_caught(tmp_path, monkeypatch):
    """The comparisons have teeth: attention at the wrong temperature, or a
    StarReLU without its bias, fails them."""
    ref = timm_metaformer('caformer_s18')
    path = tmp_path / 'timm.pth'
    torch.save(ref.state_dict(), path)
    with torch.no_grad():
        expected = timm_features(ref, CAFormer)(X)
    sdpa = F.scaled_dot_product_attention
    for patch in (
            # unscaled scores (torch 2.0's sdpa takes no ``scale``)
            (layers.F, 'scaled_dot_product_attention',
             lambda q, k, v: sdpa(q * q.shape[-1]**0.5, k, v)),
            (layers.StarReLU, 'forward',
             lambda self, x: self.scale * F.relu(x)**2),
    ):
        with monkeypatch.context() as m:
            m.setattr(*patch)
            with torch.no_grad(), pytest.raises(AssertionError):
                assert_features_equal(
                    ours_from(CAFormer, str(path), 's18')(X), expected)


# MetaFormer Baselines for Vision, Tables: params (M) with the classifier.
PAPER_PARAMS_M = dict(
    convformer=dict(s18=27, s36=40, m36=57, b36=100),
    caformer=dict(s18=26, s36=39, m36=56, b36=99),
)
# IdentityFormer / PoolFormerV2 rows: 11.9, 21.3, 30.8, 56.1, 73.3 M;
# RandFormer adds its frozen matrices, "+0.2" ... "+0.9" M.
PAPER_SMALL_M = dict(s12=11.9, s24=21.3, s36=30.8, m36=56.1, m48=73.3)
PAPER_RANDOM_M = dict(s12=0.2, s24=0.5, s36=0.7, m36=0.7, m48=0.9)


def classifier_params(cls, dim):
    """ConvFormer and CAFormer classify with an MLP head (fc 4x, squared
    ReLU, LayerNorm, fc), the others with one linear layer; the final norm
    before them is our norm3."""
    if cls in (ConvFormer, CAFormer):
        hidden = 4 * dim
        return dim * hidden + hidden + 2 * hidden + hidden * 1000 + 1000
    return dim * 1000 + 1000


def count(cls, arch):
    model = cls(arch, out_indices=(3, ))
    return sum(p.numel() for p in model.parameters()) + \
        classifier_params(cls, model.dims[-1])


@pytest.mark.parametrize('family, arch', [
    (f, a) for f, archs in PAPER_PARAMS_M.items() for a in archs])
def test_param_count_matches_paper(family, arch):
    assert round(count(FAMILIES[family], arch) / 1e6) == \
        PAPER_PARAMS_M[family][arch]


@pytest.mark.parametrize('arch', list(PAPER_SMALL_M))
def test_small_family_param_counts_match_paper(arch):
    for cls in (PoolFormerV2, IdentityFormer, RandFormer):
        assert round(count(cls, arch) / 1e6, 1) == PAPER_SMALL_M[arch]
    matrices = sum(b.numel() for b in RandFormer(arch).buffers())
    # 196^2 per block of stage 2, 49^2 per block of stage 3
    depths = RandFormer.arch_settings[arch]['depths']
    assert matrices == depths[2] * 196**2 + depths[3] * 49**2
    assert round(matrices / 1e6, 1) == PAPER_RANDOM_M[arch]


@pytest.mark.parametrize('name', ['convformer_s18', 'caformer_s18',
                                  'poolformerv2_s12'])
def test_param_count_equals_timm(name):
    import timm
    cls, arch = split(name)
    assert count(cls, arch) == sum(
        p.numel() for p in timm.create_model(name).parameters())


@pytest.mark.parametrize('cls', [PoolFormerV2, ConvFormer, CAFormer,
                                 IdentityFormer])
def test_shapes_and_strides(cls):
    model = cls().eval()
    dims = model.dims
    for h, w in [(97, 33), (64, 64)]:
        with torch.no_grad():
            outs = model(torch.randn(1, 3, h, w))
        for i, out in enumerate(outs):
            s = 2**(i + 2)
            assert out.shape == (1, dims[i], math.ceil(h / s),
                                 math.ceil(w / s))


def test_block_settings_follow_paper():
    model = CAFormer()
    assert isinstance(model.stem.norm, layers.ChannelNorm)
    assert model.stem.norm.bias is None and model.stem.norm.eps == 1e-6
    assert (model.stem.conv.kernel_size, model.stem.conv.stride,
            model.stem.conv.padding) == ((7, 7), (4, 4), (2, 2))
    down = model.stages[1].downsample
    assert list(dict(down.named_children())) == ['norm', 'conv']
    assert (down.conv.kernel_size, down.conv.stride,
            down.conv.padding) == ((3, 3), (2, 2), (1, 1))
    for i, stage in enumerate(model.stages):
        block = stage.blocks[0]
        assert isinstance(block.layer_scale1, nn.Identity)
        assert isinstance(block.res_scale1, nn.Identity) == (i < 2)
        assert block.norm1.bias is None and block.norm1.eps == 1e-6
        assert all(p.dim() > 1 for n, p in block.mlp.named_parameters()
                   if 'fc' in n)  # no biases
    attn = model.stages[2].blocks[0].token_mixer
    assert attn.num_heads == 320 // 32 and attn.qkv.bias is None
    assert attn.proj.bias is None
    assert isinstance(model.stages[1].blocks[0].token_mixer, layers.SepConv)
    assert isinstance(PoolFormerV2().stages[0].blocks[0].norm1,
                      layers.SampleNorm)


def test_sample_norm_is_groupnorm_in_both_layouts():
    norm = layers.SampleNorm(8)
    norm.weight.data.normal_()
    x = torch.randn(2, 8, 5, 7)
    expected = F.group_norm(x, 1, norm.weight, None, 1e-6)
    assert_close(norm(x), expected)
    norm.channels_last = True
    tokens = norm(x.flatten(2).transpose(1, 2))
    assert_close(tokens.transpose(1, 2).reshape(x.shape), expected)


def test_drop_path_rises_linearly():
    model = ConvFormer(drop_path_rate=0.3)
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for s in model.stages
             for b in s.blocks]
    assert rates == pytest.approx([0.3 * i / 17 for i in range(18)])


@pytest.mark.parametrize('out_indices', [(1, 2, 3), (0, 2), (3, ), (0, )])
def test_every_parameter_gets_gradient(out_indices):
    model = CAFormer(out_indices=out_indices)
    assert len(model.stages) == max(out_indices) + 1
    assert [i for i in range(4) if hasattr(model, f'norm{i}')] == \
        list(out_indices)
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize('frozen', [0, 2, 4])
def test_frozen_stages_hold_across_train(frozen):
    assert_frozen(ConvFormer(frozen_stages=frozen).train(), frozen)


@pytest.mark.integration
def test_with_cp_same_outputs_and_grads():
    torch.manual_seed(0)
    plain = CAFormer(drop_path_rate=0.2).train()
    cp_model = CAFormer(drop_path_rate=0.2, with_cp=True)
    cp_model.load_state_dict(plain.state_dict())
    cp_model.train()
    assert_same_training_step(plain, cp_model, X)


def test_generic_metaformer_hybrid():
    """The PoolFormer paper's hybrid: pooling, then attention."""
    model = MetaFormer(dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 96),
                            token_mixers=['pooling', 'pooling', 'attention',
                                          'attention'], norm='sample'))
    assert isinstance(model.stages[0].blocks[0].token_mixer, layers.Pooling)
    assert isinstance(model.stages[3].blocks[0].mlp.fc1, nn.Linear)
    assert isinstance(model.stages[0].blocks[0].mlp.fc1, nn.Conv2d)
    assert [o.shape[1] for o in model(X)] == [16, 32, 64, 96]


def test_randformer_size_is_fixed():
    model = RandFormer(input_size=64)
    assert model(X[:, :, :, :64])[3].shape[-2:] == (2, 2)
    with pytest.raises(ValueError, match=r'built for 16 tokens.*got 24'):
        model(X)


def test_randformer_classifier_at_224():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    clf = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='mmpoolformer.RandFormer', arch='s12',
                      out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=512)))
    with torch.no_grad():
        assert clf(torch.randn(1, 3, 224, 224)).shape == (1, 10)


def test_registered_everywhere():
    # mmdet's and mmseg's registries import mmcv's compiled ops, which the
    # newest torch's environment (mmcv-lite) has not
    pytest.importorskip('mmcv.ops', reason='mmcv without its ops')
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG
    for name, cls in list(FAMILIES.items()) + [('metaformer', MetaFormer)]:
        for registry in (DET, SEG):
            assert registry.get(cls.__name__) is cls
        assert CLS.get(f'mmpoolformer.{cls.__name__}') is cls


@pytest.mark.parametrize('cls, kwargs, match', [
    (ConvFormer, dict(arch='s12'), r"'s12'.*\['b36', 'm36', 's18', 's36'\]"),
    (MetaFormer, dict(arch=dict(depths=[1] * 4, dims=[8] * 4)),
     r"missing keys \['norm', 'token_mixers'\]"),
    (MetaFormer, dict(arch=dict(depths=[1] * 4, dims=[8] * 4,
                                token_mixers='conv', norm='sample')),
     r"'identity', 'pooling'.*got 'conv'"),
    (MetaFormer, dict(arch=dict(depths=[1] * 4, dims=[8] * 4,
                                token_mixers=['pooling'] * 3,
                                norm='sample')),
     r"list of 4.*\['pooling', 'pooling', 'pooling'\]"),
    (MetaFormer, dict(arch=dict(depths=[1] * 4, dims=[8] * 4,
                                token_mixers='pooling', norm='batch')),
     r"'channel', 'sample'.*got 'batch'"),
    (CAFormer, dict(arch=dict(depths=[1] * 3, dims=[8] * 4)), r'depths'),
    (CAFormer, dict(arch=dict(depths=[1] * 4, dims=[8] * 4, mlp=2)),
     r"unknown keys \['mlp'\]"),
    (CAFormer, dict(out_indices=(4, )), r'out_indices.*\(4,\)'),
    (RandFormer, dict(input_size=0), r'input_size.*0'),
    (ConvFormer, dict(drop_path_rate=1.5), r'drop_path_rate.*1\.5'),
])
def test_bad_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_v1_and_v2_checkpoints_are_not_mixed_up(tmp_path):
    v1 = tmp_path / 'poolformer_s12_timm.pth'
    torch.save(timm_poolformer('s12').state_dict(), v1)
    with pytest.raises(CheckpointFormatError,
                       match=r'Unrecognised MetaFormer.*PoolFormer \(v1\)'):
        ours_from(PoolFormerV2, str(v1), 's12')
    v2 = tmp_path / 'poolformerv2_s12_timm.pth'
    torch.save(timm_metaformer('poolformerv2_s12').state_dict(), v2)
    with pytest.raises(CheckpointFormatError,
                       match=r'MetaFormer-baseline weights \(timm layout\)'
                       r'.*type PoolFormerV2'):
        ours_from(PoolFormer, str(v2), 's12')


def test_other_family_is_an_error(tmp_path):
    path = tmp_path / 'caformer.pth'
    torch.save(timm_metaformer('caformer_s18').state_dict(), path)
    with pytest.raises(CheckpointFormatError,
                       match=r'does not fit this ConvFormer .*qkv'):
        ours_from(ConvFormer, str(path), 's18')


@pytest.mark.integration
def test_convert_tool_reads_official_metaformer(tmp_path):
    ref = timm_metaformer('convformer_s18')
    src = tmp_path / 'official.pth'
    torch.save(official_metaformer_state(ref.state_dict()), src)
    dst = tmp_path / 'converted.pth'
    out = run(tool('convert_weights.py', src, dst))
    assert 'official layout' in out.stdout
    state = torch.load(dst)
    assert state['stages.0.blocks.0.mlp.fc1.weight'].shape == (256, 64, 1, 1)
    with torch.no_grad():
        assert_features_equal(ours_from(ConvFormer, str(dst), 's18')(X),
                              timm_features(ref, ConvFormer)(X))


MEMORY_CHILD = '''
import torch
from mmpoolformer import CAFormer


def vm(field):
    status = dict(line.split(':', 1) for line in open('/proc/self/status'))
    return int(status[field].split()[0]) / 1024


model = CAFormer('s18').eval()
with torch.no_grad():
    x = torch.randn(1, 3, 800, 1216)
    x = model.stages[1](model.stages[0](model.stem(x)))  # stride 8
    model.stages[3](model.stages[2](x[:, :, :8, :8]))  # warm-up
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # VmHWM := VmRSS
    base = vm('VmRSS')
    model.stages[3](model.stages[2](x))
print(vm('VmHWM') - base)
'''


@pytest.mark.skipif(not os.path.exists('/proc/self/clear_refs'),
                    reason='needs Linux /proc')
@pytest.mark.skipif(
    torch.__version__ < '2.2', reason='torch 2.0 attends on the CPU with the '
    'whole matrix (1164 MB measured on 2.0.1); its CUDA kernels do not')
@pytest.mark.integration
def test_attention_memory_at_detection_size():
    """CAFormer-S18's attention stages at 800x1216: stage 2 has 50 x 76 =
    3800 tokens and 10 heads, so one materialised attention matrix takes
    10 * 3800^2 * 4 bytes = 578 MB (softmax makes a second). Without it
    the largest tensor is the MLP's hidden layer, 3800 x 1280 x 4 bytes =
    19 MB. The stages' peak RSS growth (in a fresh process) must stay under
    200 MB."""
    out = run([sys.executable, '-c', MEMORY_CHILD])
    peak_mb = float(out.stdout.strip().splitlines()[-1])
    assert 0 < peak_mb < 200, peak_mb
