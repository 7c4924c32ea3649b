"""Fine-tuning from another detector (``load_from`` a COCO RetinaNet-R50,
as mmengine users do): its neck and head land where they fit, our backbone
keeps the ImageNet weights its ``init_cfg`` loaded, and the log names what
was skipped; with nothing to keep, the same file is an error. The file as
mmengine saves it and as mmdet's ``publish_model.py`` publishes it (torch's
legacy format), through every path a user loads it by."""
import glob
import os.path as osp
import sys

import pytest
import torch

from helpers.checkout import REPO, run
from mmpoolformer import PoolFormer
from mmpoolformer.testing import (mmpretrain_poolformer, official_state,
                                  ours_from)
from mmpoolformer.weights import CheckpointFormatError

OURS = osp.join(REPO, 'configs', 'detection', 'retinanet_poolformer_s12.py')


def r50_config():
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs',
                    'retinanet', 'retinanet_r50_fpn_1x_coco.py')


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """An official ImageNet file of PoolFormer-S12, and mmdet's
    retinanet_r50_fpn_1x_coco with random weights: its state dict, saved
    as mmengine saves a checkpoint, and as mmdet's publish_model.py
    publishes that (a child process that does not import us)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner.checkpoint import save_checkpoint
    from mmdet.registry import MODELS
    tmp = tmp_path_factory.mktemp('load_from')
    imagenet = str(tmp / 'poolformer_s12.pth.tar')
    torch.save(official_state(mmpretrain_poolformer()), imagenet)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    r50 = MODELS.build(Config.fromfile(r50_config()).model)  # random
    state = r50.state_dict()
    saved = str(tmp / 'retinanet_r50_coco.pth')
    save_checkpoint(dict(meta=dict(epoch=12, iter=87960,
                                   dataset_meta=dict(classes=('person', ))),
                         state_dict=state, optimizer={}), saved)
    import mmdet
    tool = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools',
                    'model_converters', 'publish_model.py')
    run([sys.executable, tool, saved, str(tmp / 'published.pth')], tmp)
    # the tool renames its output in a process it does not wait for
    for _ in range(100):
        found = glob.glob(str(tmp / 'published-*.pth'))
        if found and not osp.exists(tmp / 'published.pth'):
            break
        import time
        time.sleep(0.1)
    (published, ) = found
    with open(published, 'rb') as f:
        assert f.read(2) != b'PK'  # not a zip: torch's legacy format
    return dict(imagenet=imagenet, state=state, saved=saved,
                published=published)


def fine_tuning(tmp_path, path, init_cfg):
    """Our RetinaNet-S12 as training builds it with ``load_from=path``:
    the backbone's ``init_cfg``, then the checkpoint."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(OURS)
    cfg.merge_from_dict(dict(work_dir=str(tmp_path / 'work'), load_from=path,
                             model=dict(backbone=dict(init_cfg=init_cfg))))
    runner = Runner.from_cfg(cfg)
    runner._init_model_weights()
    runner.load_or_resume()
    return runner.model


@pytest.mark.parametrize('which', ['saved', 'published'])
def test_fine_tuning_from_another_detector(files, which, tmp_path, capsys):
    imagenet = files['imagenet']
    model = fine_tuning(tmp_path, files[which],
                        dict(type='Pretrained', checkpoint=imagenet))
    out = capsys.readouterr().out
    got = model.state_dict()
    # the backbone: the ImageNet weights
    expected = ours_from(PoolFormer, imagenet,
                         out_indices=(1, 2, 3)).state_dict()
    assert all(torch.equal(got[f'backbone.{k}'], v)
               for k, v in expected.items())
    # the head and the neck's convs that fit: the file's
    r50 = files['state']
    landed = [k for k in got if not k.startswith('backbone.')
              and r50[k].shape == got[k].shape]
    assert all(torch.equal(got[k], r50[k]) for k in landed)
    assert {k for k in got if k.startswith('bbox_head.')} <= set(landed)
    assert 'neck.fpn_convs.0.conv.weight' in landed
    # named: the backbone skipped, then mmengine's misfits and leftovers
    skipped = sum(k.startswith('backbone.') for k in r50)
    assert f'PoolFormer keeps the weights its init_cfg loaded from ' \
        f"{imagenet}: skipped the checkpoint's {skipped} tensors under " \
        f"'backbone.' (['backbone.conv1.weight', 'backbone.bn1.weight'" in out
    assert 'size mismatch for neck.lateral_convs.0.conv.weight' in out
    assert 'unexpected key in source state_dict: backbone.conv1.weight' in out


def test_without_init_cfg_another_backbone_is_an_error(files, tmp_path):
    """Nothing filled the backbone (init_cfg=None, as tools/test.py and
    init_detector build it): the backbone would stay random."""
    with pytest.raises(CheckpointFormatError,
                       match=r"'backbone\.conv1\.weight'.*another "
                       r"architecture, not of this PoolFormer"):
        fine_tuning(tmp_path, files['saved'], None)


def test_published_file_loads_through_every_path(files):
    """mmdet's published (legacy-format) file after ``import mmpoolformer``:
    mmengine's CheckpointLoader gives what torch's full loader gives, and
    init_detector builds mmdet's RetinaNet-R50 from it."""
    from mmdet.apis import init_detector
    from mmengine.runner.checkpoint import CheckpointLoader
    import mmpoolformer  # noqa: F401 - the safe loader behind mmengine's
    path = files['published']
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    trusted = torch.load(path, map_location='cpu', weights_only=False)
    assert set(ckpt) == set(trusted) == {'meta', 'state_dict'}
    assert ckpt['meta'] == trusted['meta']
    assert ckpt['state_dict'].keys() == trusted['state_dict'].keys()
    assert all(torch.equal(ckpt['state_dict'][k], v)
               for k, v in trusted['state_dict'].items())
    model = init_detector(r50_config(), path, device='cpu')
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in files['state'].items())
    assert model.dataset_meta['classes'] == ('person', )
