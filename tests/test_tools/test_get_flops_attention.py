"""get_flops.py (through :mod:`mmpoolformer.analysis`) counts attention's
matrix products, which mmengine's counter skips inside
``scaled_dot_product_attention``: the same as the products written out."""
import torch
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer

from mmpoolformer.analysis import sdpa_flops


class Fused(torch.nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


class Written(torch.nn.Module):
    def forward(self, q, k, v):
        attn = (q @ k.transpose(-2, -1) * q.shape[-1]**-0.5).softmax(-1)
        return attn @ v


def test_sdpa_counted_as_its_matmuls():
    q = torch.randn(2, 3, 40, 8)
    k, v = torch.randn(2, 3, 24, 8), torch.randn(2, 3, 24, 16)
    written = FlopAnalyzer(Written(), (q, k, v)).total()
    assert written == 2 * 3 * 40 * 24 * (8 + 16)
    assert FlopAnalyzer(Fused(), (q, k, v)).total() == 0  # mmengine's
    analyzer = FlopAnalyzer(Fused(), (q, k, v)).set_op_handle(
        'aten::scaled_dot_product_attention', sdpa_flops)
    assert analyzer.total() == written
