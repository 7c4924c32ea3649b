"""The editable install tools/setup_env.sh does (``pip install --no-deps
--no-build-isolation -e .``): ``mmpoolformer/.mim`` links to the checkout,
so ``mmpoolformer::`` resolves to the checkout's configs, edits included."""
import os
import os.path as osp

import pytest

from build_env import (copy_checkout, installed, json_line, run,
                       stack_venv)
from mmpoolformer import __version__

pytestmark = pytest.mark.slow

RESOLVE = """
import json, os.path as osp
import mmpoolformer
from mmengine.config import Config
path, scope = Config._get_cfg_path(
    'mmpoolformer::detection/retinanet_poolformer_s12.py', 'user.py')
cfg = Config.fromfile('user.py')
print(json.dumps(dict(path=osp.realpath(path), scope=scope,
                      package=mmpoolformer.__file__,
                      edited=cfg.get('edited_in_checkout'))))
"""


def test_editable_install_links_the_checkout(tmp_path):
    src = copy_checkout(tmp_path / 'checkout')
    py = stack_venv(tmp_path / 'venv')
    out = run([py, '-m', 'pip', 'install', '--no-deps',
               '--no-build-isolation', '-e', src], tmp_path)
    assert installed(out) == [f'mmpoolformer-{__version__}'], out
    mim = src / 'mmpoolformer' / '.mim'
    for item in ('configs', 'tools', 'model-index.yml'):
        assert osp.islink(mim / item)
        assert osp.realpath(mim / item) == osp.realpath(src / item)

    config = src / 'configs' / 'detection' / 'retinanet_poolformer_s12.py'
    with open(config, 'a') as f:
        f.write('edited_in_checkout = True\n')
    user = tmp_path / 'user'
    os.makedirs(user)
    (user / 'user.py').write_text(
        "_base_ = 'mmpoolformer::detection/retinanet_poolformer_s12.py'\n")
    got = json_line(run([py, '-c', RESOLVE], user))
    assert got['path'] == osp.realpath(config)
    assert got['scope'] is None  # built in the config's default_scope
    assert got['package'] == str(src / 'mmpoolformer' / '__init__.py')
    assert got['edited'] is True
