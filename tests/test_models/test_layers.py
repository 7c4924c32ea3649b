"""The parts of models/layers.py, each against the formula it states: the
token mixers, StarReLU, the scales, both norms in both layouts, the MLP in
both layouts, the stage's token layout and its checkpointing."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmpoolformer.models.layers import (MIXERS, Attention, ChannelNorm, Mlp,
                                        Pooling, RandomMixing, SampleNorm,
                                        Scale, SepConv, Stage, StarReLU,
                                        build_mixer)

GEN = torch.Generator().manual_seed(0)
X = torch.randn(2, 8, 5, 7, generator=GEN)


def tokens(x):
    """NCHW maps as channels-last tokens [N, HW, C]."""
    return x.flatten(2).transpose(1, 2)


def randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=GEN))
    return module


def test_pooling_is_the_mean_of_the_inner_window_minus_x():
    out = Pooling(3)(X)
    # an inner pixel: the plain 3x3 mean; a corner: the mean of 2x2 inside
    assert torch.allclose(out[..., 2, 3] + X[..., 2, 3],
                          X[..., 1:4, 2:5].mean((-2, -1)), atol=1e-6)
    assert torch.allclose(out[..., 0, 0] + X[..., 0, 0],
                          X[..., :2, :2].mean((-2, -1)), atol=1e-6)
    # a constant map mixes to zero everywhere, borders included
    assert Pooling(5)(torch.ones(1, 2, 4, 4)).abs().max() < 1e-6


def test_star_relu():
    act = StarReLU()
    with torch.no_grad():
        act.scale.fill_(0.8)
        act.bias.fill_(-0.1)
    assert torch.allclose(act(X), 0.8 * X.clamp_min(0)**2 - 0.1)
    assert [p.shape for p in act.parameters()] == [(1, ), (1, )]


@pytest.mark.parametrize('channels_last', [False, True])
def test_scale_is_per_channel(channels_last):
    scale = Scale(8, 0.5, channels_last)
    with torch.no_grad():
        scale.scale.copy_(torch.arange(8.))
    x = tokens(X) if channels_last else X
    want = x * (torch.arange(8.) if channels_last
                else torch.arange(8.).view(-1, 1, 1))
    assert torch.equal(scale(x), want)


def test_channel_norm_is_layernorm_over_channels_in_both_layouts():
    norm = randomise(ChannelNorm(8, eps=1e-6))
    want = F.layer_norm(X.permute(0, 2, 3, 1), (8, ), norm.weight, norm.bias,
                        1e-6).permute(0, 3, 1, 2)
    assert torch.allclose(norm(X), want, atol=1e-6)
    norm.channels_last = True
    assert torch.allclose(norm(tokens(X)), tokens(want), atol=1e-6)
    assert ChannelNorm(8, bias=False).bias is None


def test_sample_norm_is_bias_free_groupnorm1_in_both_layouts():
    norm = randomise(SampleNorm(8))
    want = F.group_norm(X, 1, norm.weight, None, 1e-6)
    assert torch.allclose(norm(X), want, atol=1e-5)
    norm.channels_last = True
    assert torch.allclose(norm(tokens(X)), tokens(want), atol=1e-5)
    assert [n for n, _ in norm.named_parameters()] == ['weight']


def test_mlp_is_the_same_function_in_both_layouts():
    maps = randomise(Mlp(8, 16, nn.GELU()))
    seq = Mlp(8, 16, nn.GELU(), channels_last=True)
    with torch.no_grad():
        for a, b in ((seq.fc1, maps.fc1), (seq.fc2, maps.fc2)):
            a.weight.copy_(b.weight.flatten(1))
            a.bias.copy_(b.bias)
    assert torch.allclose(tokens(maps(X)), seq(tokens(X)), atol=1e-5)
    assert Mlp(8, 16, StarReLU(), bias=False).fc1.bias is None


def test_attention_is_softmax_qk_v_over_heads_of_32():
    attn = randomise(Attention(64))
    assert attn.num_heads == 2
    x = torch.randn(2, 6, 64, generator=GEN)
    q, k, v = (attn.qkv(x).view(2, 6, 3, 2, 32).permute(2, 0, 3, 1, 4))
    y = ((q @ k.transpose(-2, -1)) * 32**-0.5).softmax(-1) @ v
    want = attn.proj(y.transpose(1, 2).reshape(2, 6, 64))
    assert torch.allclose(attn(x), want, atol=1e-5)


def test_sepconv_has_no_biases_and_keeps_shape():
    mixer = SepConv(8)
    assert all(m.bias is None for m in mixer.modules()
               if isinstance(m, nn.Conv2d))
    assert mixer(X).shape == X.shape


def test_random_mixing_is_a_frozen_row_stochastic_matrix():
    mixer = RandomMixing(35)
    assert list(mixer.parameters()) == []
    assert torch.allclose(mixer.random_matrix.sum(-1), torch.ones(35))
    x = tokens(X)
    assert torch.allclose(mixer(x), mixer.random_matrix @ x)
    with pytest.raises(ValueError, match='built for 35 tokens and got 12'):
        mixer(torch.randn(1, 12, 8))


def test_build_mixer_covers_every_name():
    kinds = {name: type(build_mixer(name, 32, 16)) for name in MIXERS}
    assert kinds == dict(identity=nn.Identity, pooling=Pooling,
                         sepconv=SepConv, attention=Attention,
                         random=RandomMixing)


class Double(nn.Module):
    def forward(self, x):
        return 2 * x


def test_stage_hands_token_blocks_tokens_and_returns_maps():
    seen = []

    class Record(nn.Module):
        def forward(self, x):
            seen.append(x.shape)
            return x + 1

    stage = Stage(nn.Identity(), [Record()], channels_last=True)
    out = stage(X)
    assert seen == [(2, 35, 8)]
    assert torch.equal(out, X + 1)


def test_stage_checkpointing_gives_the_same_gradients():
    blocks = [randomise(Mlp(8, 16, nn.GELU())) for _ in range(2)]
    grads = []
    for with_cp in (False, True):
        stage = Stage(nn.Identity(), blocks, with_cp=with_cp).train()
        x = X.clone().requires_grad_()
        stage(x).square().sum().backward()
        grads.append(x.grad)
    assert torch.allclose(*grads, atol=1e-6)
