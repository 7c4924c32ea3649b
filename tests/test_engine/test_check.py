"""PyramidCheckHook: the README's RetinaNet example trains; the same example
without ``start_level=0`` (the issue's mistake: strides 16-256 under
anchors for 8-128, ``norm1`` unused) stops after iteration 1, naming the
strides and the parameters, with the message docs/usage.md quotes."""
import re
import textwrap

import pytest
from mmengine.config import Config

from helpers.checkout import REPO, run, tool
from helpers.configs import shapes_config
from helpers.readme import USAGE, write_configs

pytestmark = pytest.mark.slow


def readme_run_config(tmp_path, data, break_it=False):
    """The README's my_retinanet.py on the tests' shapes data (one epoch of
    4 iterations, no validation), trained from scratch; ``break_it`` drops
    its ``start_level=0``."""
    def drop(code):
        assert ', start_level=0)' in code
        return code.replace(', start_level=0)', ')')

    paths = write_configs(tmp_path,
                          {'my_retinanet.py': drop} if break_it else None)
    readme = Config.fromfile(paths['my_retinanet.py'])
    cfg = Config.fromfile(shapes_config(tmp_path / 'shapes.py', 'det', data,
                                        train_cfg=dict(max_epochs=1)))
    cfg.model = readme.model
    cfg.model.backbone.init_cfg = None  # no download: from scratch
    cfg.model.bbox_head.num_classes = 3
    cfg.custom_hooks = readme.custom_hooks
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    path = str(tmp_path / 'run.py')
    cfg.dump(path)
    return path


def train(config, work_dir):
    return run(tool('train.py', config, '--work-dir', work_dir), cwd=REPO,
               check=False, timeout=600)


def test_readme_retinanet_trains_and_passes_the_check(tiny_data, tmp_path):
    proc = train(readme_run_config(tmp_path, tiny_data), tmp_path / 'work')
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'PyramidCheckHook: strides match (bbox_head.prior_generator); ' \
        'every backbone parameter received a gradient' in log
    assert 'Epoch(train) [1][4/4]' in log


def test_wrong_grid_stops_after_iteration_1(tiny_data, tmp_path):
    proc = train(readme_run_config(tmp_path, tiny_data, break_it=True),
                 tmp_path / 'work')
    assert proc.returncode != 0
    err = proc.stderr
    assert 'PyramidError: Iteration 1: the feature pyramid and the heads ' \
        'disagree' in err
    assert 'bbox_head.prior_generator assumes strides 8, 16, 32, 64, 128' \
        in err
    assert 'PoolFormer: output 1 (stride 8, norm1) of out_indices=(1, 2, 3)' \
        in err
    assert 'start_level=1' in err
    assert 'Epoch(train) [1][2/4]' not in proc.stdout + err
    # docs/usage.md quotes this message.
    with open(USAGE) as f:
        quoted = re.search(r'^  ```text\n(  PyramidError.*?)^  ```$',
                           f.read(), re.M | re.S)
    assert quoted, "docs/usage.md quotes no PyramidError"
    message = err[err.index('PyramidError: '):]
    assert textwrap.dedent(quoted.group(1)) in err, message
