"""The fused path computes the paper's block: its fp32 outputs and gradients
equal the op-by-op path's, to what fp32 can promise, on the CPU and (marker
``cuda``) on a GPU.

Where drop path is off, the reference is the op-by-op path in float64, and
each fused tensor may differ from it by a few times what the op-by-op path's
own fp32 run does (or 1e-5 of its scale, whichever is larger): with order-1
layer scales that error grows with depth, with the processor's kernels
(AVX-512 or not) and with the torch release, so no fixed bound from one
machine's run holds on every machine.
"""
import copy

import pytest
import torch

from helpers.devices import DEVICES, skip_coarse_bf16_bound
from mmpoolformer import PoolFormer, torchapi
from mmpoolformer.testing import assert_close as close
from mmpoolformer.testing import randomise
from helpers.tiers import sample


def pair(arch='s12', device='cpu', **kwargs):
    torch.manual_seed(0)
    plain = randomise(PoolFormer(arch, fused=False, **kwargs))
    fused = PoolFormer(arch, fused=True, **kwargs)
    fused.load_state_dict(plain.state_dict())
    return plain.to(device), fused.to(device)


def run(model, x, seed=1):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    x = x.clone().requires_grad_()
    outs = model(x)
    weights = torch.Generator().manual_seed(7)
    loss = sum((o * torch.randn(o.shape, generator=weights).to(o.device)
                ).sum() for o in outs)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    return outs, x.grad, grads


def exact(plain, x, seed=1):
    """``run`` of the op-by-op path in float64, cast back to float32, with
    the op-by-op fp32 run's distance from it: each tensor's bound."""
    outs, xg, grads = run(copy.deepcopy(plain).double(), x.double(), seed)
    ref = ([o.float() for o in outs], xg.float(),
           {n: g.float() for n, g in grads.items()})
    return ref, bounds(ref, run(plain, x, seed))


#: how many times the op-by-op fp32 error the fused path may reach
FP32_SLACK = 4


def bounds(ref, plain32):
    """``FP32_SLACK`` times the op-by-op fp32 run's largest error against the
    float64 ``ref`` (relative to each tensor's scale, at least 1e-5): over
    the outputs for each output, and over all parameter gradients for each
    of them, since one tensor's own fp32 error can be small by luck."""
    def err(r, p):
        return (p - r).abs().max().item() / max(1.0, r.abs().max().item())

    def tol(errors):
        return max(1e-5, FP32_SLACK * max(errors))

    (ro, rx, rg), (po, px, pg) = ref, plain32
    out = tol([err(r, p) for r, p in zip(ro, po)])
    grad = tol([err(rg[n], pg[n]) for n in rg])
    return [out] * len(ro), tol([err(rx, px)]), dict.fromkeys(rg, grad)


def compare(plain_run, tols=None, fused=None):
    """The fused path's run ``fused`` against ``plain_run``, within
    ``tols`` (as :func:`exact` returns them; None: 1e-5 of each tensor's
    scale)."""
    (po, px, pg), (fo, fx, fg) = plain_run, fused
    to, tx, tg = tols or ([1e-5] * len(po), 1e-5, dict.fromkeys(pg, 1e-5))
    for a, b, t in zip(fo, po, to):
        close(a, b, 'output', t)
    close(fx, px, 'input grad', tx)
    for name, g in pg.items():
        if '.blocks.' in name and name.endswith('.norm1.bias'):
            # cancels in pool(y) - y: exactly 0 fused, rounding noise plain
            assert torch.equal(fg[name], torch.zeros_like(g))
            ref = pg[name.replace('bias', 'weight')].abs().max()
            assert g.abs().max() <= 1e-3 * ref
        else:
            close(fg[name], g, name, tg[name])


X = torch.randn(2, 3, 96, 132, generator=torch.Generator().manual_seed(3))


def test_fast_path_is_channels_last_inside_and_needs_group_norm():
    model = PoolFormer('s12', fused=True)
    stages = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, args, out: stages.append(out))
    outs = model(X)
    assert all(o.is_contiguous(memory_format=torch.channels_last)
               for o in stages)
    # the layout stays inside: the heads get NCHW maps (test_layout.py)
    assert all(o.is_contiguous() for o in outs)
    assert not PoolFormer('s12', norm_cfg=dict(type='BN')).fused


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('memory_format', sample(
    [torch.contiguous_format, torch.channels_last],
    lambda f: f == torch.contiguous_format))
def test_fused_equals_plain_eval_and_train(memory_format, device):
    plain, fused = pair(device=device)
    x = X.to(device).contiguous(memory_format=memory_format)
    compare(*exact(plain.eval(), x), fused=run(fused.eval(), x))
    compare(*exact(plain.train(), x), fused=run(fused.train(), x))


@pytest.mark.parametrize('device', DEVICES)
def test_fused_equals_plain_with_drop_path(device):
    plain, fused = pair(drop_path_rate=0.3, device=device)
    plain.train()
    fused.train()
    x = X.to(device)
    for seed in (1, 2):
        compare(run(plain, x, seed), fused=run(fused, x, seed))


def test_fused_equals_plain_with_cp():
    plain, fused = pair(with_cp=True, drop_path_rate=0.2)
    compare(run(plain.train(), X), fused=run(fused.train(), X))


@pytest.mark.parametrize('device', DEVICES)
def test_odd_sizes_and_deep_arch(device):
    plain, fused = pair('m36', device, out_indices=(0, 3))
    x = torch.randn(1, 3, 70, 45,
                    generator=torch.Generator().manual_seed(0)).to(device)
    compare(*exact(plain.eval(), x), fused=run(fused.eval(), x))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('shape', [(1, 3, 32, 32), (3, 3, 36, 20)])
def test_one_pixel_stages_and_batch_sizes(shape, device):
    # at 32x32 the last stage is 1x1, where channels-last strides are
    # ambiguous
    plain, fused = pair(device=device)
    x = torch.randn(*shape,
                    generator=torch.Generator().manual_seed(1)).to(device)
    compare(*exact(plain.train(), x), fused=run(fused.train(), x))


def test_narrow_mlp():
    # hidden width below 3C: the backward cannot reuse u's buffer
    plain, fused = pair(dict(depths=[1, 1, 2, 1], dims=[16, 24, 32, 40]),
                        mlp_ratio=1.5)
    compare(*exact(plain.train(), X), fused=run(fused.train(), X))


@pytest.mark.parametrize('device, dtype', [
    ('cpu', torch.bfloat16),
    pytest.param('cuda', torch.bfloat16, marks=pytest.mark.cuda),
    pytest.param('cuda', torch.float16, marks=pytest.mark.cuda)])
def test_autocast_runs_the_plain_block(device, dtype):
    """AMP: the fused block would mix bf16 activations with fp32 buffers.
    Under autocast the fast-path model computes what the op-by-op one does,
    close to the exact result."""
    plain, fused = pair(device=device)
    x = X.to(device)
    ref, _ = exact(plain.train(), x)
    with torch.autocast(device, dtype=dtype):
        outs, _, grads = run(fused.train(), x)
        plain_outs, _, plain_grads = run(plain.train(), x)
    assert not any(s.ran_fast for s in fused.stages)

    def same(a, b):
        """The same ops on the same inputs: equal on the CPU; on a GPU,
        whose kernels may sum in another order from run to run, within the
        autocast dtype's rounding."""
        if device == 'cpu':
            return torch.equal(a, b)
        return ((a - b).norm() <= 1e-2 * b.norm()).item()

    for a, b in zip(outs, plain_outs):
        assert same(a, b)
    for name, g in grads.items():
        assert torch.isfinite(g).all(), name
        assert same(g, plain_grads[name]), name
    skip_coarse_bf16_bound(device)  # on the CPU, dtype is bf16
    for a, b in zip(outs, ref[0]):
        err = (a.float() - b).abs().max().item()
        assert err <= 0.05 * b.abs().max().item()


@pytest.mark.parametrize('device', DEVICES)
def test_inference_without_grad(device):
    plain, fused = pair(drop_path_rate=0.1, device=device)
    plain.eval()
    fused.eval()
    x = X.to(device)
    with torch.no_grad():
        for a, b in zip(fused(x), plain.double()(x.double())):
            close(a, b.float(), 'output')


def test_frozen_block_passes_input_grad():
    """Block parameters that need no gradient, an input that does."""
    plain, fused = pair()
    for model in (plain, fused):
        model.stages[1].requires_grad_(False)
    x = X.clone().requires_grad_()
    outs = [m(x) for m in (plain.train(), fused.train())]
    grads = [torch.autograd.grad(sum(o.sum() for o in out), x)[0]
             for out in outs]
    close(grads[1], grads[0], 'input grad')


@pytest.mark.skipif(not torchapi.compiles(),
                    reason='torch.compile does not run here (torch 2.0 '
                    'on Python 3.11)')
def test_compile_has_no_graph_breaks_and_matches():
    arch = dict(depths=[1, 1, 2, 1], dims=[16, 24, 32, 40])
    torch._dynamo.reset()
    # inductor draws random numbers its own way: no drop path here
    eager = randomise(PoolFormer(arch, fused=True)).train()
    compiled = PoolFormer(arch, torch_compile=dict(fullgraph=True))
    compiled.load_state_dict(eager.state_dict())
    compiled.train()
    x = torch.randn(2, 3, 64, 96)
    # compiled blocks run op by op: the reference side of compare
    compare(run(compiled, x), fused=run(eager, x))


def test_second_backward_is_refused_not_wrong():
    """The backward reuses the saved activations' buffers, so a second
    backward through the same graph must fail loudly."""
    model = PoolFormer(dict(depths=[1, 1, 1, 1], dims=[8, 8, 8, 8]),
                       fused=True).train()
    loss = sum(o.sum() for o in model(X[:1, :, :32, :32]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match='modified by an inplace'):
        loss.backward()
