"""The devices a test runs on: ``pytest.mark.parametrize('device', DEVICES)``
runs it on the CPU everywhere and on CUDA where there is a GPU (the
``cuda`` marker; tests/conftest.py skips it elsewhere)."""
import pytest

DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.cuda)]


def skip_coarse_bf16_bound(device: str):
    """Skip the rest of a test (its bf16 error bound) on a CPU whose bf16
    convolutions are too coarse for it
    (:func:`mmpoolformer.testing.precision.cpu_bf16_coarse`); call it after
    checking that the results are finite."""
    from mmpoolformer.testing.precision import cpu_bf16_coarse
    coarse = device == 'cpu' and cpu_bf16_coarse()
    if coarse:
        pytest.skip(f'bf16 finite; its bound not checked: {coarse}')
