"""Engine pieces apart from the models: launching, mixed precision, the
non-finite loss guard, the pyramid check, exact resumption and
depth-decayed learning rates."""
from .amp import CPUAutocastOptimWrapper, enable_amp
from .check import PyramidCheckHook, PyramidError
from .guard import FiniteLossHook, NonFiniteLossError
from .launch import LAUNCHERS, adapt_to_device, prepare
from .optim import DepthDecayOptimWrapperConstructor
from .resume import RNGStateHook, configure_resume, latest_good_checkpoint

__all__ = ['CPUAutocastOptimWrapper', 'enable_amp', 'FiniteLossHook',
           'NonFiniteLossError', 'PyramidCheckHook', 'PyramidError',
           'LAUNCHERS', 'adapt_to_device', 'prepare',
           'RNGStateHook', 'configure_resume', 'latest_good_checkpoint',
           'DepthDecayOptimWrapperConstructor']
