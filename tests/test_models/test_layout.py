"""Every backbone hands the heads contiguous (NCHW) maps, on every path, in
training and inference, as every OpenMMLab backbone does: the fast path's
blocks and the token stages work channels-last inside, and mmcv's RoIAlign
reads its input as NCHW whatever its strides."""
import pytest
import torch
import torch.nn.functional as F

import mmpoolformer

SMALL = dict(depths=[1, 1, 2, 1], dims=[8, 16, 32, 40])
X = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
CASES = [('PoolFormer', dict(fused=True)), ('PoolFormer', dict(fused=False)),
         ('PoolFormerV2', {}), ('ConvFormer', {}), ('CAFormer', {}),
         ('IdentityFormer', {}),
         ('MetaFormer', dict(arch=dict(
             SMALL, token_mixers=['pooling', 'sepconv', 'attention',
                                  'identity'], norm='sample')))]


@pytest.mark.parametrize('family, kwargs', CASES, ids=[
    'PoolFormer-fast', 'PoolFormer-plain', 'PoolFormerV2', 'ConvFormer',
    'CAFormer', 'IdentityFormer', 'MetaFormer-hybrid'])
def test_outputs_are_contiguous(family, kwargs):
    kwargs = dict(dict(arch=SMALL), **kwargs)
    model = getattr(mmpoolformer, family)(**kwargs)
    for mode in (False, True):
        outs = model.train(mode)(X)
        assert [o.is_contiguous() for o in outs] == [True] * 4
    if family == 'PoolFormer':
        # the path the outputs came from
        assert all(s.ran_fast is kwargs['fused'] for s in model.stages)


def test_roi_align_reads_channels_last_wrong_on_cpu():
    """Why: mmcv's CPU roi_align on a channels-last map gives other numbers
    than on the same map contiguous (its kernels index the data as NCHW;
    the CUDA ones too, by reading its source), while torch's grid_sample,
    which the mask head's paste and DINO's deformable attention on CPU
    use, reads any layout."""
    ops = pytest.importorskip('mmcv.ops')
    try:
        ops.RoIAlign(1, 1.0)(torch.zeros(1, 1, 2, 2), torch.zeros(1, 5))
    except (ImportError, ModuleNotFoundError, RuntimeError) as err:
        pytest.skip(f'mmcv without compiled ops: {err}')
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 16, 24, 32, generator=gen)
    rois = torch.tensor([[0, 2., 3., 20., 15.], [1, 0., 0., 31., 23.]])
    align = ops.RoIAlign(7, 1.0, sampling_ratio=2)
    want = align(feat, rois)
    got = align(feat.contiguous(memory_format=torch.channels_last), rois)
    assert (got - want).abs().max() > 0.1 * want.abs().max()
    grid = torch.rand(2, 5, 6, 2, generator=gen) * 2 - 1
    assert torch.equal(
        F.grid_sample(feat, grid, align_corners=False),
        F.grid_sample(feat.contiguous(memory_format=torch.channels_last),
                      grid, align_corners=False))
