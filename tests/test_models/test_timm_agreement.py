"""Ours and timm's networks with the same weights agree in fp32: outputs,
input gradients and every parameter's gradient, on the CPU and (marker
``cuda``) on a GPU, through the same code the GPU matrix of
tools/benchmark.py checks with (the checkout's ``benchmarks/gpu.py``)."""
import pytest
import torch

from benchmarks import gpu as bench
from helpers.devices import DEVICES
from mmpoolformer import torchapi


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


class Contiguous(torch.nn.Module):
    """``net`` with its outputs made contiguous (NCHW)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return tuple(o.contiguous() for o in self.net(x))


def aten_ops(model, x):
    """The ATen ops of ``model``'s forward and backward graphs as
    ``torch.compile`` hands them to its compiler (here a recorder that runs
    them as they are): the graphs inductor would generate kernels from."""
    from collections import Counter

    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd
    graphs = []

    def record(gm, inputs):
        graphs.append(Counter(str(n.target) for n in gm.graph.nodes
                              if n.op == 'call_function'))
        return make_boxed_func(gm.forward)

    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=aot_autograd(
        fw_compiler=record, bw_compiler=record))
    sum(o.sum() for o in compiled(x)).backward()
    return graphs


@pytest.mark.skipif(not torchapi.compiles(),
                    reason='torch.compile does not run here (torch 2.0 '
                    'on Python 3.11)')
@pytest.mark.integration
@pytest.mark.parametrize('name', bench.FAMILIES)
def test_compiled_ours_is_timms_graph(name):
    """Compiled, ours hands inductor no op that timm's network lacks,
    forward or backward, so inductor generates the same kernels for both
    and ours compiled runs as fast as timm's compiled (docs/benchmarks.md):
    any op ours adds under compile (a guard, a copy, a cast) fails this."""
    pair = bench.Pair(name)
    x = torch.randn(2, 3, 64, 96)
    ours = aten_ops(pair.impls['mmpoolformer'], x)
    timm = aten_ops(Contiguous(pair.impls['timm']), x)
    assert len(ours) == len(timm) == 2  # one forward, one backward graph
    for graph, mine, theirs in zip(('forward', 'backward'), ours, timm):
        # timm's may hold more (its p=0 dropouts are clones in training)
        assert not mine - theirs, f'{graph}: ours adds {mine - theirs}'
