"""mmpoolformer's benchmark harness: ours against mmpretrain's and timm's
networks, on the CPU and on a GPU. It lives in the checkout, not in the
installed package; ``python tools/benchmark.py`` (or ``python -m
benchmarks``) runs it from the checkout's root.

- :mod:`.harness`: the networks (ours and a reference holding the same
  weights), one timed step, the interleaved timing on
  :mod:`torch.utils.benchmark`, peak memory and the machine's description;
- :mod:`.cpu`: the CPU matrix (PoolFormer v1 at detection's and
  segmentation's sizes) and the family comparison (the MetaFormer
  baselines against timm);
- :mod:`.gpu`: the GPU matrix (checks, eager and compiled speed, compile
  time, memory, dynamic shapes, within a time budget);
- :mod:`.backbones`: whether this environment builds and runs every
  backbone without the OpenMMLab task libraries;
- ``gpu_bundle.sh``: gathers the pure-Python dependencies for an offline
  CUDA machine.
"""
