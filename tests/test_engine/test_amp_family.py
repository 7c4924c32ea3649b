"""Mixed precision of every family (PoolFormer v1, PoolFormerV2, ConvFormer,
CAFormer, IdentityFormer, the PoolFormer paper's pooling/attention
MetaFormer): bf16 and fp16 autocast errors against fp32 held to measured
bounds, and fp16 finite where activations are large, on the CPU and (marker
``cuda``) on a GPU.

The measurements are :mod:`mmpoolformer.testing.precision`'s (2x3x64x96,
order-1 scales, norm affines and StarReLU scalars, seeds 0 and 1; the
largest relative error of any output and of any stage's parameter
gradients); docs/benchmarks.md has the tables.
"""
import pytest
import torch

from helpers.devices import DEVICES, skip_coarse_bf16_bound
from mmpoolformer.testing.precision import (BOUNDS, CPU_DTYPES, FAMILIES,
                                            LARGE_BOUNDS, amplify,
                                            bound_problems, build,
                                            cpu_bf16_coarse, measure, rel)
from helpers.tiers import sample, unit_family

# torch 2.0's CPU autocast knows bf16 alone: there, fp16 is CUDA's only
needs_fp16 = pytest.mark.skipif(
    'fp16' not in CPU_DTYPES, reason='this torch has no fp16 CPU autocast')


def dtypes_on(device):
    """The autocast dtypes ``device`` runs with this torch."""
    return ('bf16', 'fp16') if device == 'cuda' else CPU_DTYPES


def skip_fp16_on(device):
    if 'fp16' not in dtypes_on(device):
        pytest.skip('this torch has no fp16 CPU autocast')



def check(result, bounds):
    problems = bound_problems(result, bounds)
    assert not problems, problems


def test_bound_check_catches_errors_and_non_finite_values():
    good = dict(out=[1e-3] * 4, grad=[2e-3] * 4, finite_out=True,
                finite_grad=True)
    assert bound_problems(dict(bf16=good), dict(bf16=(1e-3, 2e-3))) == []
    for change in (dict(out=[1e-3, 1.1e-3, 0, 0]), dict(grad=[3e-3] * 4),
                   dict(finite_grad=False)):
        assert bound_problems(dict(bf16={**good, **change}),
                              dict(bf16=(1e-3, 2e-3)))


def bf16_conv(accumulate):
    """A stand-in for F.conv2d on bf16 inputs (1x1 kernels) that sums the
    products in ``accumulate`` (torch.float32 or torch.bfloat16)."""
    real = torch.nn.functional.conv2d

    def conv2d(x, w, *args, **kwargs):
        if x.dtype != torch.bfloat16:
            return real(x, w, *args, **kwargs)
        acc = torch.zeros(x.shape[0], w.shape[0], *x.shape[2:],
                          dtype=accumulate)
        for c in range(x.shape[1]):
            acc = acc + (x[:, c:c + 1].float() * w[:, c].float().view(
                1, -1, 1, 1)).to(accumulate)
        return acc.bfloat16()
    return conv2d


@pytest.mark.parametrize('accumulate, coarse', [(torch.float32, False),
                                                (torch.bfloat16, True)])
def test_bf16_probe_tells_kernels_apart(monkeypatch, accumulate, coarse):
    """The probe that decides whether the bf16 bounds apply on this CPU
    passes a kernel that accumulates in fp32 and flags one that
    accumulates in bf16 (torch 2.0.1's on CPUs without AVX-512)."""
    from mmpoolformer.testing import precision
    monkeypatch.setattr(torch.nn.functional, 'conv2d', bf16_conv(accumulate))
    precision.cpu_bf16_conv_error.cache_clear()
    try:
        assert bool(precision.cpu_bf16_coarse()) is coarse
    finally:
        precision.cpu_bf16_conv_error.cache_clear()


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('family, size',
                         sample(sorted(BOUNDS), unit_family))
def test_errors_within_measured_bounds(family, size, device):
    bounds = {d: b for d, b in BOUNDS[(family, size)].items()
              if d in dtypes_on(device)}
    coarse = device == 'cpu' and cpu_bf16_coarse()
    if coarse:  # finite, and no error bound for bf16 (see there)
        bounds['bf16'] = (float('inf'), float('inf'))
    check(measure(family, size, dtypes=tuple(bounds), device=device), bounds)
    skip_coarse_bf16_bound(device)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('family',
                         sample(sorted(FAMILIES), unit_family))
def test_fp16_finite_at_large_activations(family, device):
    """Every layer before an activation scaled so that its largest output
    is 350 (fp16 holds it; StarReLU's square of it does not): finite for
    every family, and within the measured bounds where there are some."""
    skip_fp16_on(device)
    size = FAMILIES[family][1][0]
    check(measure(family, size, seeds=(0, ), dtypes=('fp16', ), large=True,
                  device=device),
          dict(fp16=LARGE_BOUNDS.get(family, (float('inf'), ) * 2)))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('family', sorted(FAMILIES))
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_outputs_are_fp32_under_autocast(family, dtype, device):
    if dtype == torch.float16:
        skip_fp16_on(device)
    model = build(family, FAMILIES[family][1][0], device=device)
    with torch.autocast(device, dtype=dtype):
        outs = model(torch.randn(1, 3, 32, 32, device=device))
    assert [o.dtype for o in outs] == [torch.float32] * 4


@needs_fp16
@pytest.mark.parametrize('part', ['mlp', 'token_mixer'])
def test_starrelu_and_the_layer_after_it_finite_in_fp16(part):
    """ConvFormer's MLP and separable convolution, their first layer's
    outputs up to 1000: fp16 holds them, StarReLU's square of them (1e6)
    it does not."""
    module = getattr(build('convformer', 's18').stages[0].blocks[0], part)
    x = torch.randn(2, 64, 8, 8, generator=torch.Generator().manual_seed(0))
    amplify(module, x, 1000.)
    with torch.no_grad():
        ref = module(x)
        with torch.autocast('cpu', dtype=torch.float16):
            out = module(x)
    assert torch.isfinite(out).all(), 'inf or nan'
    assert rel(out.float(), ref) < 2e-3
