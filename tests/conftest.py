"""Fixtures shared by the test modules (helpers are in
:mod:`mmpoolformer.testing` and ``tests/helpers``), and the ``cuda``
marker's skip. Importing :mod:`helpers.checkout` makes the checkout's
benchmark harness (``benchmarks/``) importable."""
import pytest
import torch

import helpers.checkout  # noqa: F401
from mmpoolformer.datasets import make_dataset


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a GPU: skipped without one."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU (marker cuda)')
    for item in items:
        if item.get_closest_marker('cuda'):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def exact_fp32_on_cuda(request):
    """Tests on a GPU compare fp32 with fp32 (or float64): TF32, on by
    default for cuDNN's convolutions, rounds to 10 mantissa bits."""
    if not request.node.get_closest_marker('cuda') or \
            not torch.cuda.is_available():
        yield
        return
    flags = (torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        (torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = flags


def _managers(cls):
    """``cls`` and its subclasses, each with its own ``_instance_dict``."""
    yield cls
    for sub in cls.__subclasses__():
        yield from _managers(sub)


@pytest.fixture(autouse=True)
def runners_apart():
    """mmengine's Runner takes its logger, message hub and visualizer by
    name, the config's file name and the second it starts: a runner of the
    same config started in the same second as one of an earlier test gets
    that one's, which logs and writes into the earlier test's folder (gone
    once it passed, pytest.ini) and carries its history. The instances a
    test made go with it."""
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.visualization import Visualizer
    roots = (Visualizer, MMLogger, MessageHub)
    before = {cls: set(cls._instance_dict)
              for root in roots for cls in _managers(root)}
    yield
    for root in roots:
        for cls in _managers(root):
            for name in set(cls._instance_dict) - before.get(cls, set()):
                del cls._instance_dict[name]


@pytest.fixture(autouse=True)
def deterministic_mode_restored():
    """A runner with ``randomness=dict(deterministic=True)`` turns on
    torch's deterministic algorithms for the whole process (mmengine never
    turns them off), and with them ``fused='auto'``'s fixed rule: each test
    starts from the mode the one before it started from."""
    flags = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = \
        flags[2:]


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
    """8 training and 4 held-out 96px images in COCO and ADE20K layouts."""
    root = tmp_path_factory.mktemp('tiny_data')
    return make_dataset(str(root), num_train=8, num_val=4, size=96, seed=0)
