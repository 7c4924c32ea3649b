"""Reference PoolFormers (mmpretrain's, timm's) and MetaFormer baselines
(timm's, the authors' restated) holding given weights, and the tolerance
their outputs are compared at."""
import re
from typing import Callable, Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Layer scales, res scales, norm affines and StarReLU's scale and bias
    of order 1, in place: at the 1e-5 default a wrong mixer or MLP would
    change the output by less than any tolerance."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'layer_scale' in name or 'norm' in name or '.scale' in name \
                    or re.search(r'act\d?\.bias$', name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + 0.5)
    return model


def assert_close(ours: torch.Tensor, ref: torch.Tensor, name: str = '',
                 tol: float = 1e-5) -> None:
    """``ours`` equals ``ref`` to ``tol`` of ``ref``'s scale (at least 1).

    A relative bound because fp32 is at its floor here: with order-1 layer
    scales a 12-block network's output moves by ~4e-6 of its scale (3e-5
    absolute at |out| ~ 8) with the input's memory format alone."""
    assert ours.shape == ref.shape, f'{name}: {ours.shape} vs {ref.shape}'
    err = (ours - ref).abs().max().item()
    scale = max(1.0, ref.abs().max().item())
    assert err <= tol * scale, f'{name}: {err:.2e} at scale {scale:.2e}'


def assert_features_equal(ours: Sequence[torch.Tensor],
                          ref: Sequence[torch.Tensor],
                          tol: float = 1e-5) -> None:
    """Two backbones' outputs: as many, each :func:`assert_close`."""
    assert len(ours) == len(ref), f'{len(ours)} outputs vs {len(ref)}'
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert_close(a, b, f'output {i}', tol)


def assert_same_training_step(a: nn.Module, b: nn.Module, x: torch.Tensor,
                              seed: int = 1) -> None:
    """Backbones ``a`` and ``b``, holding the same weights, give the same
    outputs and parameter gradients on ``x`` from the same random state
    (loss: the outputs' mean squares)."""
    results = []
    for model in (a, b):
        torch.manual_seed(seed)
        outs = model(x)
        sum((o * o).mean() for o in outs).backward()
        results.append((outs, {n: p.grad
                               for n, p in model.named_parameters()}))
    for out_a, out_b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(out_a, out_b)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][name], msg=name)


def assert_frozen(model: nn.Module, frozen: int) -> None:
    """``frozen_stages=frozen`` holds in training mode: the stem, stages
    0..frozen-1 and their output norms in eval mode without trainable
    parameters, the later stages trainable."""
    frozen_mods = [model.stem] + [model.stages[i] for i in range(frozen)] + \
        [getattr(model, f'norm{i}') for i in range(frozen)]
    for m in frozen_mods:
        assert not m.training
        assert all(not p.requires_grad for p in m.parameters())
    for i in range(frozen, len(model.stages)):
        assert all(p.requires_grad for p in model.stages[i].parameters())


def ours_from(cls, path: str, *args, **kwargs) -> nn.Module:
    """``cls(*args, **kwargs)`` loading ``path`` through its ``Pretrained``
    init_cfg, in eval mode."""
    model = cls(*args, init_cfg=dict(type='Pretrained', checkpoint=path),
                **kwargs)
    model.init_weights()
    return model.eval()


def mmpretrain_poolformer(arch: str = 's12',
                          out_indices: Sequence[int] = (0, 2, 4, 6),
                          fresh_norms: bool = False) -> nn.Module:
    """mmpretrain's PoolFormer, randomised, in eval mode. ``fresh_norms``
    resets its output norms to weight 1, bias 0, as an ImageNet checkpoint
    (which has none) leaves ours."""
    from mmpretrain.models.backbones import PoolFormer
    model = randomise(PoolFormer(arch, out_indices=list(out_indices)))
    if fresh_norms:
        for i in out_indices:
            getattr(model, f'norm{i}').reset_parameters()
    model.eval()  # mmpretrain's train() returns None: no chaining
    return model


def official_state(ref: nn.Module, seed: int = 1) -> Dict[str, torch.Tensor]:
    """The authors' ImageNet file for mmpretrain model ``ref``: mmpretrain's
    names without prefix, a classifier ``norm`` and ``head``, no per-output
    norms."""
    gen = torch.Generator().manual_seed(seed)
    dim = ref.network[-1][-1].mlp.fc2.out_channels
    state = {k: v for k, v in ref.state_dict().items()
             if not k.startswith('norm')}
    state.update({'norm.weight': torch.randn(dim, generator=gen),
                  'norm.bias': torch.randn(dim, generator=gen),
                  'head.weight': torch.randn(1000, dim, generator=gen),
                  'head.bias': torch.randn(1000, generator=gen)})
    return state


def timm_poolformer(arch: str, state: Dict[str, torch.Tensor] = None):
    """timm's ``poolformer_{arch}``, with ``state`` (any layout timm's
    filter reads, e.g. :func:`official_state`) or randomised, in eval
    mode."""
    import timm
    from timm.models.metaformer import checkpoint_filter_fn
    model = timm.create_model(f'poolformer_{arch}')
    if state is None:
        randomise(model)
    else:
        model.load_state_dict(checkpoint_filter_fn(state, model))
    return model.eval()


def timm_metaformer(name: str) -> nn.Module:
    """timm's MetaFormer baseline ``name`` (e.g. 'caformer_s18'),
    randomised, in eval mode."""
    import timm
    return randomise(timm.create_model(name)).eval()


class TimmFeatures(nn.Module):
    """A timm MetaFormer as a 4-output backbone: each stage's output through
    a fresh ``norm(channels)`` (GroupNorm(1) by default), as ours has after
    loading ImageNet weights."""

    def __init__(self, model: nn.Module,
                 norm: Callable[[int], nn.Module] = lambda c: nn.GroupNorm(
                     1, c)):
        super().__init__()
        self.model = model
        self.norms = nn.ModuleList(
            norm(info['num_chs']) for info in model.feature_info)

    def forward(self, x):
        x, outs = self.model.stem(x), []
        for stage, norm in zip(self.model.stages, self.norms):
            x = stage(x)
            outs.append(norm(x))
        return outs


def official_metaformer_state(
        state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The authors' (sail-sg/metaformer) file for a model in timm's or our
    layout: ``downsample_layers``, ``stages.{i}.{j}``, channels-last
    ``nn.Linear`` weights for every pointwise layer, classifier ``norm`` and
    ``head`` (timm's classifier, or a random linear one)."""
    out = {}
    for key, value in state.items():
        if re.match(r'norm\d\.', key):
            continue
        key = re.sub(r'^head\.(norm|fc)\.', lambda m: 'norm.' if m.group(1)
                     == 'norm' else 'head.', key)
        m = re.match(r'stem\.(conv|norm)\.(.*)', key)
        if m:
            part = 'conv' if m.group(1) == 'conv' else 'post_norm'
            key = f'downsample_layers.0.{part}.{m.group(2)}'
        m = re.match(r'stages\.(\d+)\.downsample\.(conv|norm)\.(.*)', key)
        if m:
            part = 'conv' if m.group(2) == 'conv' else 'pre_norm'
            key = f'downsample_layers.{m.group(1)}.{part}.{m.group(3)}'
        key = re.sub(r'^stages\.(\d+)\.blocks\.', r'stages.\1.', key)
        if value.dim() == 4 and value.shape[2:] == (1, 1):
            value = value.flatten(1)
        out[key] = value
    if 'norm.weight' not in out:
        gen = torch.Generator().manual_seed(1)
        dim = out['downsample_layers.3.conv.weight'].shape[0]
        out.update({'norm.weight': torch.randn(dim, generator=gen),
                    'norm.bias': torch.randn(dim, generator=gen),
                    'head.weight': torch.randn(1000, dim, generator=gen),
                    'head.bias': torch.randn(1000, generator=gen)})
    return out


def _star_relu(x, state, prefix):
    return state[prefix + 'scale'] * F.relu(x)**2 + state[prefix + 'bias']


def _official_mixer(name, x, state, prefix):
    """One token mixer of the authors' code on ``[N, H, W, C]``."""
    n, h, w, c = x.shape
    if name == 'identity':
        return x
    if name == 'pooling':
        pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), 3, 1, 1,
                              count_include_pad=False)
        return pooled.permute(0, 2, 3, 1) - x
    if name == 'sepconv':
        y = _star_relu(x @ state[prefix + 'pwconv1.weight'].t(), state,
                       prefix + 'act1.')
        dw = state[prefix + 'dwconv.weight']
        y = F.conv2d(y.permute(0, 3, 1, 2), dw, padding=3, groups=dw.shape[0])
        return y.permute(0, 2, 3, 1) @ state[prefix + 'pwconv2.weight'].t()
    tokens = x.reshape(n, h * w, c)
    if name == 'random':
        mixed = torch.einsum('mn,bnc->bmc', state[prefix + 'random_matrix'],
                             tokens)
        return mixed.reshape(n, h, w, c)
    # attention, the matrix written out as the authors do
    heads = max(c // 32, 1)
    qkv = (tokens @ state[prefix + 'qkv.weight'].t()).reshape(
        n, h * w, 3, heads, 32).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q @ k.transpose(-2, -1) * 32**-0.5).softmax(-1)
    y = (attn @ v).transpose(1, 2).reshape(n, h, w, heads * 32)
    return y @ state[prefix + 'proj.weight'].t()


def official_metaformer(state: Dict[str, torch.Tensor], x: torch.Tensor,
                        token_mixers: Sequence[str],
                        norm: str) -> List[torch.Tensor]:
    """The authors' MetaFormer forward (sail-sg/metaformer,
    ``metaformer_baselines.py``) restated with functional ops on their
    channels-last layout, from a state dict in their layout: the four stage
    outputs, NCHW. ``norm`` is the blocks' 'channel' (LayerNorm) or 'sample'
    (over H, W, C) norm; all norms are bias-free with eps 1e-6."""

    def layer_norm(t, weight, dims):
        t = t - t.mean(dims, keepdim=True)
        return t / torch.sqrt(t.pow(2).mean(dims, keepdim=True) + 1e-6) * \
            weight

    block_dims = (-1, ) if norm == 'channel' else (1, 2, 3)
    outs = []
    for i, mixer in enumerate(token_mixers):
        down = f'downsample_layers.{i}.'
        if i:
            x = layer_norm(x, state[down + 'pre_norm.weight'], (-1, ))
            x = x.permute(0, 3, 1, 2)
        x = F.conv2d(x, state[down + 'conv.weight'], state[down + 'conv.bias'],
                     stride=2 if i else 4, padding=1 if i else 2)
        x = x.permute(0, 2, 3, 1)
        if not i:
            x = layer_norm(x, state[down + 'post_norm.weight'], (-1, ))
        j = 0
        while f'stages.{i}.{j}.norm1.weight' in state:
            b = f'stages.{i}.{j}.'
            for k in (1, 2):
                y = layer_norm(x, state[f'{b}norm{k}.weight'], block_dims)
                if k == 1:
                    y = _official_mixer(mixer, y, state, b + 'token_mixer.')
                else:
                    y = _star_relu(y @ state[b + 'mlp.fc1.weight'].t(), state,
                                   b + 'mlp.act.')
                    y = y @ state[b + 'mlp.fc2.weight'].t()
                y = y * state.get(f'{b}layer_scale{k}.scale', 1.)
                x = x * state.get(f'{b}res_scale{k}.scale', 1.) + y
            j += 1
        outs.append(x.permute(0, 3, 1, 2))
    return outs
