"""Engine pieces apart from the models: launching, mixed precision, the
non-finite loss guard, exact resumption and depth-decayed learning rates."""
from .amp import CPUAutocastOptimWrapper, enable_amp
from .guard import FiniteLossHook, NonFiniteLossError
from .launch import LAUNCHERS, adapt_to_device, prepare
from .optim import DepthDecayOptimWrapperConstructor
from .resume import RNGStateHook, configure_resume, latest_good_checkpoint

__all__ = ['CPUAutocastOptimWrapper', 'enable_amp', 'FiniteLossHook',
           'NonFiniteLossError', 'LAUNCHERS', 'adapt_to_device', 'prepare',
           'RNGStateHook', 'configure_resume', 'latest_good_checkpoint',
           'DepthDecayOptimWrapperConstructor']
