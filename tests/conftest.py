"""Fixtures shared by the test modules (helpers are in
:mod:`mmpoolformer.testing`)."""
import pytest

from mmpoolformer.datasets import make_dataset


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
    """8 training and 4 held-out 96px images in COCO and ADE20K layouts."""
    root = tmp_path_factory.mktemp('tiny_data')
    return make_dataset(str(root), num_train=8, num_val=4, size=96, seed=0)
