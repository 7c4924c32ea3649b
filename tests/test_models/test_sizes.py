"""One size table per generation: the families' ``arch_settings`` are the
rows they were written as before (copied here from the tables they replace),
and every arch of every family builds the same state-dict keys and shapes
and, seeded, the same outputs, bit for bit, as that row given whole."""
import pytest
import torch

import mmpoolformer
from mmpoolformer import MetaFormer, PoolFormer
from helpers.tiers import SMALLEST, sample

S = (64, 128, 320, 512)
M = (96, 192, 384, 768)
POOL, IDENT = ('pooling', ) * 4, ('identity', ) * 4
RAND = ('identity', 'identity', 'random', 'random')
SEP, CA = ('sepconv', ) * 4, ('sepconv', 'sepconv', 'attention', 'attention')
RES23 = (None, None, 1.0, 1.0)
GEN1 = dict(s12=((2, 2, 6, 2), S), s24=((4, 4, 12, 4), S),
            s36=((6, 6, 18, 6), S), m36=((6, 6, 18, 6), M),
            m48=((8, 8, 24, 8), M))
GEN2 = dict(s18=((3, 3, 9, 3), S), s36=((3, 12, 18, 3), S),
            m36=((3, 12, 18, 3), (96, 192, 384, 576)),
            b36=((3, 12, 18, 3), (128, 256, 512, 768)))


def rows(sizes, mixers, norm):
    return {a: dict(depths=d, dims=c, token_mixers=mixers, norm=norm,
                    layer_scale_init_value=None, res_scale_init_values=RES23)
            for a, (d, c) in sizes.items()}


# The tables as they were written, one whole row per arch and family.
BEFORE = dict(
    PoolFormer={a: dict(depths=d, dims=c, layer_scale_init_value=ls)
                for (a, (d, c)), ls in zip(GEN1.items(),
                                           (1e-5, 1e-5, 1e-6, 1e-6, 1e-6))},
    PoolFormerV2=rows(GEN1, POOL, 'sample'),
    IdentityFormer=rows(GEN1, IDENT, 'sample'),
    RandFormer=rows(GEN1, RAND, 'sample'),
    ConvFormer=rows(GEN2, SEP, 'channel'),
    CAFormer=rows(GEN2, CA, 'channel'))
SIZE = 64  # RandFormer's input_size too


def test_tables_are_the_rows_they_replace():
    for family, before in BEFORE.items():
        assert getattr(mmpoolformer, family).arch_settings == before, family


def seeded(build):
    torch.manual_seed(0)
    return build().eval()


def extra(family):
    return dict(input_size=SIZE) if family == 'RandFormer' else {}


@pytest.mark.parametrize('family, arch', sample(
    [(f, a) for f, t in BEFORE.items() for a in t],
    lambda fa: fa[1] in SMALLEST))
def test_same_keys_shapes_and_outputs(family, arch):
    cls = getattr(mmpoolformer, family)
    generic = PoolFormer if family == 'PoolFormer' else MetaFormer
    ours = seeded(lambda: cls(arch, **extra(family)))
    whole = seeded(lambda: generic(arch=dict(BEFORE[family][arch]),
                                   **extra(family)))
    a, b = ours.state_dict(), whole.state_dict()
    assert [(k, v.shape) for k, v in a.items()] == \
        [(k, v.shape) for k, v in b.items()]
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 3, SIZE, SIZE,
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert all(torch.equal(p, q) for p, q in zip(ours(x), whole(x)))
