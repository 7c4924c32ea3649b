"""get_flops.py counts attention's matrix products, which mmengine's counter
skips inside ``scaled_dot_product_attention``: the same as the products
written out."""
import importlib.util
import os.path as osp
import sys

import torch
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer

from mmpoolformer.testing import TOOLS


def get_flops():
    sys.path.insert(0, TOOLS)  # it imports its neighbour cli.py
    try:
        spec = importlib.util.spec_from_file_location(
            'get_flops', osp.join(TOOLS, 'get_flops.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(TOOLS)
    return module


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
        'aten::scaled_dot_product_attention', get_flops().sdpa_flops)
    assert analyzer.total() == written
