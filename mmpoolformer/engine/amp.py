"""Mixed precision for tools/train.py: which dtype, and the optimizer
wrapper that runs it on the device at hand. A dtype the machine cannot run
is a ValueError or RuntimeError, which the tool turns into an exit."""
from contextlib import contextmanager
from typing import Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from ..torchapi import cuda_bf16_native

DTYPES = ('bf16', 'fp16')


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """bf16 autocast for training on CPU, which mmengine's
    ``AmpOptimWrapper`` refuses. bf16 has fp32's exponent range, so there is
    no loss scaling: otherwise an ordinary ``OptimWrapper``."""

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), \
                torch.autocast('cpu', dtype=torch.bfloat16):
            yield


def choose_dtype(requested: Optional[str] = None) -> Tuple[str, str]:
    """The autocast dtype for this machine and why: ``requested`` if given
    (fp16 needs CUDA), else bf16 where the device computes it natively (CPUs,
    and GPUs from Ampere on: A100, A10, RTX 30xx/40xx, H100), fp16 with
    dynamic loss scaling on older GPUs (V100, T4, RTX 20xx)."""
    if requested is not None and requested not in DTYPES:
        raise ValueError(f'--amp-dtype must be one of {DTYPES}, got '
                         f'{requested!r}')
    cuda = torch.cuda.is_available()
    if requested == 'fp16' and not cuda:
        raise RuntimeError('--amp-dtype fp16 needs a CUDA GPU: CPU autocast in '
                         'fp16 is slow and unscaled; use --amp (bf16) on CPU')
    if requested is not None:
        return requested, 'as requested by --amp-dtype'
    if not cuda:
        return 'bf16', 'no CUDA: bf16 autocast on the CPU'
    # bf16 only where native: V100s and T4s would get bf16 emulated, far
    # slower than their fp16 tensor cores.
    if cuda_bf16_native():
        return 'bf16', (f'{torch.cuda.get_device_name()} computes bf16 '
                        f'natively, which needs no loss scaling')
    return 'fp16', (f'{torch.cuda.get_device_name()} has no native bf16: '
                    f'fp16 with dynamic loss scaling')


def enable_amp(cfg: Config, requested: Optional[str] = None) -> str:
    """Switch ``cfg``'s optimizer wrapper to mixed precision; returns the
    log line saying which dtype runs and why."""
    dtype, why = choose_dtype(requested)
    wrapper = cfg.optim_wrapper
    if torch.cuda.is_available():
        wrapper.type = 'AmpOptimWrapper'  # mmengine's, unchanged
        wrapper.dtype = 'bfloat16' if dtype == 'bf16' else 'float16'
        wrapper.setdefault('loss_scale', 'dynamic')
    else:
        wrapper.type = 'CPUAutocastOptimWrapper'
    return f'Mixed precision: {dtype} autocast ({why}).'
