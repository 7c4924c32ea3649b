import math

import pytest
import torch
import torch.nn.functional as F

from mmpoolformer import PoolFormer
from mmpoolformer.models.poolformer import PoolFormerBlock
from mmpoolformer.testing import assert_frozen, assert_same_training_step
from helpers.tiers import sample

ARCHS = ['s12', 's24', 's36', 'm36', 'm48']
# Paper table: params in millions including the ImageNet classifier.
PAPER_PARAMS_M = dict(s12=12, s24=21, s36=31, m36=56, m48=73)


@pytest.mark.parametrize('arch', sample(ARCHS, lambda a: a == 's12'))
def test_shapes_and_strides(arch):
    model = PoolFormer(arch).eval()
    dims = PoolFormer.arch_settings[arch]['dims']
    for h, w in [(333, 517), (64, 64), (97, 33)]:
        with torch.no_grad():
            outs = model(torch.randn(1, 3, h, w))
        assert len(outs) == 4
        for i, out in enumerate(outs):
            s = 2**(i + 2)
            assert out.shape == (1, dims[i], math.ceil(h / s),
                                 math.ceil(w / s))


@pytest.mark.parametrize('arch', ARCHS)
def test_param_count_matches_paper(arch):
    model = PoolFormer(arch, out_indices=(3, ))
    dim = model.dims[-1]
    # the paper counts the classifier: final norm (= our norm3) + fc head
    n = sum(p.numel() for p in model.parameters()) + dim * 1000 + 1000
    assert round(n / 1e6) == PAPER_PARAMS_M[arch]


def test_arch_settings_follow_paper():
    for arch in ARCHS:
        depths = PoolFormer.arch_settings[arch]['depths']
        total = sum(depths)
        assert depths == (total // 6, total // 6, total // 2, total // 6)
    model = PoolFormer('s36')
    assert model.stages[0].blocks[0].layer_scale1.detach().eq(1e-6).all()
    model = PoolFormer('s12')
    assert model.stages[0].blocks[0].layer_scale1.detach().eq(1e-5).all()
    assert model.stem.kernel_size == (7, 7) and model.stem.stride == (4, 4)
    assert model.stem.padding == (2, 2)
    down = model.stages[1].downsample
    assert (down.kernel_size, down.stride, down.padding) == ((3, 3), (2, 2),
                                                             (1, 1))


def _reference_block(block, x):
    """The paper's block written with functional ops only."""
    g1, b1 = block.norm1.weight, block.norm1.bias
    y = F.group_norm(x, 1, g1, b1, 1e-5)
    mixed = F.avg_pool2d(y, 3, 1, 1, count_include_pad=False) - y
    x = x + block.layer_scale1.view(-1, 1, 1) * mixed
    y = F.group_norm(x, 1, block.norm2.weight, block.norm2.bias, 1e-5)
    y = F.conv2d(F.gelu(F.conv2d(y, block.mlp.fc1.weight,
                                 block.mlp.fc1.bias)), block.mlp.fc2.weight,
                 block.mlp.fc2.bias)
    return x + block.layer_scale2.view(-1, 1, 1) * y


def test_block_matches_paper_formula():
    torch.manual_seed(0)
    block = PoolFormerBlock(16).eval()
    for name, p in block.named_parameters():
        if 'norm' in name or 'layer_scale' in name:
            p.data.normal_()
    x = torch.randn(2, 16, 7, 9)
    torch.testing.assert_close(block(x), _reference_block(block, x))


def test_pooling_excludes_padding():
    block = PoolFormerBlock(1)
    x = torch.arange(9.).view(1, 1, 3, 3)
    pooled = block.token_mixer(x) + x
    # corner: mean of the 2x2 window inside the image, not /9
    assert pooled[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 3 + 4) / 4)


def test_drop_path_rises_linearly():
    model = PoolFormer('s12', drop_path_rate=0.3)
    rates = [
        getattr(b.drop_path, 'drop_prob', 0.) for s in model.stages
        for b in s.blocks
    ]
    expected = [0.3 * i / 11 for i in range(12)]
    assert rates == pytest.approx(expected)


def test_out_indices_build_only_needed_norms_and_stages():
    model = PoolFormer('s12', out_indices=(1, 2, 3))
    assert not hasattr(model, 'norm0')
    assert all(hasattr(model, f'norm{i}') for i in (1, 2, 3))
    model = PoolFormer('s12', out_indices=(0, 1))
    assert len(model.stages) == 2
    assert [o.shape[1] for o in model(torch.randn(1, 3, 64, 64))] == [64, 128]


@pytest.mark.parametrize('out_indices', [(1, 2, 3), (0, 2), (3, )])
def test_every_parameter_gets_gradient(out_indices):
    model = PoolFormer('s12', out_indices=out_indices)
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


@pytest.mark.parametrize('frozen', [0, 1, 3, 4])
def test_frozen_stages_hold_across_train(frozen):
    model = PoolFormer('s12', frozen_stages=frozen)
    model.train()
    assert_frozen(model, frozen)
    for i in range(frozen, 4):
        assert model.stages[i].training
    if frozen < 4:
        sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
        assert model.stem.weight.grad is None
        assert model.stages[3].blocks[0].mlp.fc1.weight.grad is not None


def test_no_freezing_by_default():
    model = PoolFormer('s12').train()
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())


def test_norm_eval_keeps_batchnorm_stats():
    model = PoolFormer('s12', norm_cfg=dict(type='BN'), norm_eval=True)
    model.train()
    before = model.norm0.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(model.norm0.running_mean, before)
    assert not model.norm0.training
    trained = PoolFormer('s12', norm_cfg=dict(type='BN')).train()
    trained(torch.randn(2, 3, 64, 64))
    assert not torch.equal(trained.norm0.running_mean, before)


@pytest.mark.parametrize('pin', ['fast', 'plain'])
@pytest.mark.parametrize('drop_path_rate', sample([0., 0.2],
                                                  lambda r: r > 0))
def test_with_cp_same_outputs_and_grads(drop_path_rate, pin, monkeypatch):
    # both models on one path: 'auto' keys with_cp apart, and measured
    # under load the two could take different paths, which round apart
    monkeypatch.setenv('MMPOOLFORMER_AUTO', pin)
    torch.manual_seed(0)
    plain = PoolFormer('s12', drop_path_rate=drop_path_rate).train()
    cp_model = PoolFormer('s12', drop_path_rate=drop_path_rate, with_cp=True)
    cp_model.load_state_dict(plain.state_dict())
    cp_model.train()
    assert_same_training_step(plain, cp_model, torch.randn(2, 3, 64, 96))


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='s13'), r"'s13'.*\['m36', 'm48', 's12', 's24', 's36'\]"),
    (dict(arch=dict(depths=[1, 1, 1])), 'depths'),
    (dict(arch=dict(depths=[1] * 4, dims=[8] * 4, mlp=2)), 'mlp'),
    (dict(out_indices=(4, )), r'out_indices.*0\.\.3.*\(4,\)'),
    (dict(out_indices=(1, 1)), r'out_indices.*\(1, 1\)'),
    (dict(out_indices=()), r'out_indices'),
    (dict(out_indices=(-1, )), r'out_indices'),
    (dict(frozen_stages=5), r'frozen_stages.*-1\.\.4.*5'),
    (dict(frozen_stages=-2), r'frozen_stages.*-2'),
    (dict(pool_size=4), r'pool_size.*4'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PoolFormer(**kwargs)


def test_custom_arch_dict():
    model = PoolFormer(
        dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32],
             layer_scale_init_value=0.1), pool_size=5)
    outs = model(torch.randn(1, 3, 40, 40))
    assert [o.shape[1] for o in outs] == [8, 16, 24, 32]
    assert model.stages[2].blocks[1].layer_scale2.detach().eq(0.1).all()


def test_bad_input_channels():
    model = PoolFormer('s12')
    with pytest.raises(ValueError, match=r'\[N, 3, H, W\].*\[1, 4, 32, 32\]'):
        model(torch.randn(1, 4, 32, 32))
    outs = PoolFormer('s12', in_channels=4)(torch.randn(1, 4, 32, 32))
    assert [tuple(o.shape) for o in outs] == [
        (1, 64, 8, 8), (1, 128, 4, 4), (1, 320, 2, 2), (1, 512, 1, 1)]
