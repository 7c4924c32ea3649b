"""A training run whose loss stops being finite stops, naming the iteration,
instead of training on garbage for hours."""
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Check every iteration's loss. Under fp16 loss scaling (mmengine's
    ``AmpOptimWrapper``), the scaler has already skipped that step, so the
    hook logs the new scale and training goes on; otherwise it stops with
    the iteration and the loss terms.

    mmdet's ``CheckInvalidLossHook`` does the check but stops with an
    ``AssertionError`` that names neither, mmseg has none, and neither
    knows about loss scaling.
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        loss = (outputs or {}).get('loss')
        if loss is None or torch.isfinite(loss).all():
            return
        scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
        if scaler is not None and scaler.is_enabled():
            print_log(f'Iteration {runner.iter + 1}: loss is {loss.item()}; '
                      f'fp16 loss scaling skipped the step, scale now '
                      f'{scaler.get_scale()}', logger='current')
            return
        terms = {k: float(v) for k, v in outputs.items()
                 if 'loss' in k and torch.is_tensor(v) and v.numel() == 1}
        raise NonFiniteLossError(
            f'Iteration {runner.iter + 1} (epoch {runner.epoch + 1}): the '
            f'training loss is {loss.item()}; loss terms: {terms}')
