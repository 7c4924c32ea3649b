"""Mixed precision of every family (PoolFormer v1, PoolFormerV2, ConvFormer,
CAFormer, IdentityFormer, the PoolFormer paper's pooling/attention
MetaFormer): bf16 and fp16 autocast errors against fp32 held to measured
bounds, and fp16 finite where activations are large.

The measurements are :mod:`mmpoolformer.testing.precision`'s (2x3x64x96,
order-1 scales, norm affines and StarReLU scalars, seeds 0 and 1; the
largest relative error of any output and of any stage's parameter
gradients); docs/benchmarks.md has the tables.
"""
import pytest
import torch

from mmpoolformer.testing.precision import (CPU_DTYPES, FAMILIES, amplify,
                                            build, measure, rel)

# torch 2.0's CPU autocast knows bf16 alone: there, fp16 is CUDA's only
needs_fp16 = pytest.mark.skipif(
    'fp16' not in CPU_DTYPES, reason='this torch has no fp16 CPU autocast')

# (family, size): {dtype: (outputs, gradients)}, about 1.2x the errors
# measured; the comments say what they were before the stages' fp32 lift
# (fp32_stream) reached the MetaFormer baselines. Each bound is below that.
BOUNDS = {
    # measured 5.5e-3 / 7.9e-3 and 6.7e-4 / 1.0e-3
    ('poolformer', 's12'): dict(bf16=(6.6e-3, 9.5e-3), fp16=(8e-4, 1.2e-3)),
    # 7.9e-3 / 1.4e-2 and 1.13e-3 / 1.9e-3; before: 1.11e-2 / 2.3e-2 and
    # 1.46e-3 / 2.9e-3 (pool(x) - x in bf16/fp16)
    ('poolformerv2', 's12'): dict(bf16=(9.4e-3, 1.7e-2),
                                  fp16=(1.4e-3, 2.3e-3)),
    # 2.6e-3 / 5.6e-3 and 3.4e-4 / 7.4e-4; before: 4.1e-3 / 7.4e-3 and
    # 5.1e-4 / 1.06e-3
    ('convformer', 's18'): dict(bf16=(3.2e-3, 6.7e-3), fp16=(4.1e-4, 8.9e-4)),
    # 3.6e-3 / 7.0e-3 and 3.9e-4 / 8.2e-4; before: 4.1e-3 / 6.7e-3 and
    # 5.2e-4 / 9.0e-4
    ('caformer', 's18'): dict(bf16=(4.3e-3, 8.4e-3), fp16=(4.7e-4, 9.8e-4)),
    # 3.6e-3 / 5.8e-3 and 4.3e-4 / 8.0e-4; before: 5.2e-3 / 8.6e-3 and
    # 6.4e-4 / 1.07e-3
    ('identityformer', 's12'): dict(bf16=(4.3e-3, 7e-3),
                                    fp16=(5.2e-4, 9.7e-4)),
    # 4.2e-3 / 7.0e-3 and 5.6e-4 / 9.2e-4; before: 5.0e-3 / 8.1e-3 and
    # 6.4e-4 / 1.37e-3
    ('metaformer', 's12'): dict(bf16=(4.9e-3, 8.4e-3), fp16=(6.6e-4, 1.1e-3)),
}
# family: (outputs, gradients) of fp16 at large activations, about 1.2x the
# measured errors. Before StarReLU ran in fp32 and the layer after it
# through fp16_safe, every MetaFormer baseline gave inf and NaN here.
LARGE_BOUNDS = dict(
    poolformer=(7.5e-4, 5e-3),  # 6.2e-4 / 4.2e-3
    poolformerv2=(2.7e-3, 5e-3),  # 2.2e-3 / 4.2e-3
    convformer=(2.7e-2, 5.5e-2),  # 2.3e-2 / 4.6e-2
    caformer=(6.2e-3, 2.4e-2),  # 5.2e-3 / 2.0e-2
    identityformer=(3.6e-3, 6e-3),  # 3.0e-3 / 5.0e-3
    metaformer=(2.7e-3, 5.1e-3),  # 2.2e-3 / 4.2e-3
)


def check(result, bounds):
    for dtype, (out_tol, grad_tol) in bounds.items():
        res = result[dtype]
        assert res['finite_out'] and res['finite_grad'], dtype
        assert max(res['out']) <= out_tol, (dtype, 'outputs', res['out'])
        assert max(res['grad']) <= grad_tol, (dtype, 'gradients',
                                              res['grad'])


@pytest.mark.parametrize('family, size', sorted(BOUNDS))
def test_errors_within_measured_bounds(family, size):
    bounds = {d: b for d, b in BOUNDS[(family, size)].items()
              if d in CPU_DTYPES}
    check(measure(family, size, dtypes=tuple(bounds)), bounds)


@needs_fp16
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_fp16_finite_at_large_activations(family):
    """Every layer before an activation scaled so that its largest output
    is 350 (fp16 holds it; StarReLU's square of it does not): finite for
    every family, and within the measured bounds where there are some."""
    size = FAMILIES[family][1][0]
    check(measure(family, size, seeds=(0, ), dtypes=('fp16', ), large=True),
          dict(fp16=LARGE_BOUNDS.get(family, (float('inf'), ) * 2)))


@pytest.mark.parametrize('family', sorted(FAMILIES))
@pytest.mark.parametrize('dtype', [
    torch.bfloat16, pytest.param(torch.float16, marks=needs_fp16)])
def test_outputs_are_fp32_under_autocast(family, dtype):
    model = build(family, FAMILIES[family][1][0])
    with torch.autocast('cpu', dtype=dtype):
        outs = model(torch.randn(1, 3, 32, 32))
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
