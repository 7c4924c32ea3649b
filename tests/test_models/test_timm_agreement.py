"""Ours and timm's networks with the same weights agree in fp32: outputs,
input gradients and every parameter's gradient, on the CPU and (marker
``cuda``) on a GPU, through the same code the GPU matrix of
tools/benchmark.py checks with (:mod:`mmpoolformer.testing.benchmark`)."""
import pytest
import torch

from helpers.devices import DEVICES
from mmpoolformer.testing import benchmark as bench


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name', bench.FAMILIES)
def test_ours_agree_with_timm_in_fp32(name, device):
    pair = bench.Pair(name, device)
    x = torch.randn(2, 3, 64, 96,
                    generator=torch.Generator().manual_seed(0)).to(device)
    rows = bench.agreement(pair, x)
    assert [r['impl'] for r in rows] == [k for k in pair.impls
                                          if k != 'timm']
    for row in rows:
        assert row['ok'], row


def test_agreement_catches_a_wrong_weight():
    """One changed weight tensor in ours: the outputs and gradients move far
    past the bound."""
    pair = bench.Pair('convformer_s18')
    with torch.no_grad():  # order-1 noise on weights initialised at 0.02
        w = pair.impls['mmpoolformer'].stages[2].blocks[0].mlp.fc1.weight
        w.add_(torch.randn(w.shape, generator=torch.Generator().manual_seed(
            0)))
    (row, ) = bench.agreement(pair, torch.randn(1, 3, 64, 64))
    assert not row['ok'] and row['out'] > 10 * bench.FP32_TOL
    assert row['param_grad'] > 10 * bench.FP32_TOL


def test_agreement_catches_a_parameter_without_gradient():
    pair = bench.Pair('poolformer_s12')
    for label in ('mmpoolformer', 'mmpoolformer fused=True'):
        pair.impls[label].norm3.weight.requires_grad_(False)
    rows = bench.agreement(pair, torch.randn(1, 3, 64, 64))
    assert all(not r['ok'] and r['unmatched'] == ['norm3.weight']
               for r in rows)
