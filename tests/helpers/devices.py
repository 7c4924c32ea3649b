"""The devices a test runs on: ``pytest.mark.parametrize('device', DEVICES)``
runs it on the CPU everywhere and on CUDA where there is a GPU (the
``cuda`` marker; tests/conftest.py skips it elsewhere)."""
import pytest

DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.cuda)]
