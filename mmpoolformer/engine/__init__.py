"""Engine pieces apart from the models: launching and exact resumption."""
from .launch import LAUNCHERS, adapt_to_device, prepare
from .resume import RNGStateHook, configure_resume, latest_good_checkpoint

__all__ = ['LAUNCHERS', 'adapt_to_device', 'prepare', 'RNGStateHook',
           'configure_resume', 'latest_good_checkpoint']
