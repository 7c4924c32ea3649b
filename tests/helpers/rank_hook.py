"""A hook the distributed tests import: each rank writes what it trained."""
import json
import os

from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankReportHook(Hook):

    def __init__(self, out_dir):
        self.out_dir = out_dir

    @staticmethod
    def _checksum(runner):
        model = runner.model.module if hasattr(runner.model, 'module') \
            else runner.model
        return float(sum(p.detach().double().sum()
                         for p in model.parameters()))

    def before_train(self, runner):
        self.initial = self._checksum(runner)

    def after_train(self, runner):
        with open(os.path.join(self.out_dir, f'rank{get_rank()}.json'),
                  'w') as f:
            json.dump(dict(rank=get_rank(), world_size=get_world_size(),
                           iters=runner.iter,
                           wrapper=type(runner.model).__name__,
                           initial=self.initial,
                           checksum=self._checksum(runner)), f)
