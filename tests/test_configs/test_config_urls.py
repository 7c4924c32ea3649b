"""Configs say only what they use: every URL or checkpoint path in a dumped
config (what ``mim``, a dumped work dir and any reader see) names the
weights of the config's own backbone, family and size, and nothing else
(no ConvNeXt-B URL left by mmseg's upernet_convnext.py, no ResNet weights
from the stock bases, no other size's URL left by a parent config)."""
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

from helpers.configs import CONFIGS
from helpers.tiers import per_config

PATHS = sorted(glob.glob(str(CONFIGS / '*' / '*.py')))
# a URL, a model-zoo name or a checkpoint file name
WEIGHTS = re.compile(r'^(\w+://|.*\.(pth|pth\.tar|safetensors|pt)$)')


def strings(node, where=''):
    """(key path, string) of every string in a nested config."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(v, f'{where}.{k}' if where else k)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from strings(v, f'{where}[{i}]')
    elif isinstance(node, str):
        yield where, node


def own_weights(path):
    """The backbone family and size the config's file name names, as its
    weights' file names spell them (e.g. 'poolformer_s12')."""
    name = osp.splitext(osp.basename(path))[0]
    # the demo (from scratch) and mmdeploy's configs (no model)
    if name.endswith('_shapes') or \
            osp.basename(osp.dirname(path)) == 'deploy':
        return None
    return '_'.join(name.split('_')[-2:])


@pytest.mark.parametrize('path', per_config(PATHS))
def test_every_url_is_the_configs_own_backbone(path):
    cfg = Config.fromfile(path)
    found = [(k, v) for k, v in strings(cfg.to_dict()) if WEIGHTS.match(v)]
    own = own_weights(path)
    wrong = [(k, v) for k, v in found
             if own is None or f'/{own}' not in v.replace('.', '/')]
    assert not wrong, f'{osp.basename(path)}: weights of another model: ' \
        f'{wrong}'
    if own is not None:  # and it has its own
        assert [k for k, _ in found] == ['model.backbone.init_cfg.checkpoint']
