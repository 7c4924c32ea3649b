"""Reference PoolFormers (mmpretrain's, timm's) holding given weights, and the
tolerance their outputs are compared at."""
from typing import Dict, Sequence

import torch
import torch.nn as nn


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Layer scales, res scales and norm affines of order 1, in place: at the
    1e-5 default a wrong mixer or MLP would change the output by less than
    any tolerance."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'layer_scale' in name or 'norm' in name or '.scale' in name:
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


class TimmFeatures(nn.Module):
    """A timm MetaFormer as a 4-output backbone: each stage's output through
    a fresh GroupNorm(1) (weight 1, bias 0), as ours has after loading
    ImageNet weights."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.norms = nn.ModuleList(
            nn.GroupNorm(1, s.blocks[0].norm1.num_channels)
            for s in model.stages)

    def forward(self, x):
        x, outs = self.model.stem(x), []
        for stage, norm in zip(self.model.stages, self.norms):
            x = stage(x)
            outs.append(norm(x))
        return outs
