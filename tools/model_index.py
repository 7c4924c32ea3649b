"""Write the model index that ``mim search mmpoolformer`` and mmengine read:
``configs/<task>/metafile.yml`` for every config in configs/detection and
configs/segmentation, and ``model-index.yml`` importing them.

    python tools/model_index.py            # write; count FLOPs where needed
    python tools/model_index.py --recount  # count every config's FLOPs again
    python tools/model_index.py --no-flops # write; count no FLOPs
    python tools/model_index.py --check    # exit 1 if the files are stale

Each entry's parameters come from building the model, its FLOPs from
``get_flops.py`` at that tool's default input size; both are randomly
initialised models, no download. Counting FLOPs takes 10-60 s a config on a
CPU, so an existing entry keeps its FLOPs while its config still builds a
model of the same parameter count (``--recount`` counts them all). Metrics
are given only where the PoolFormer paper publishes them; the ImageNet
weights are the backbone's ``init_cfg`` checkpoint (``ImageNet Weights``:
there are no trained detector or segmentor checkpoints to list as
``Weights``). A checkout-only tool: it is not shipped in the package.
"""
import argparse
import glob
import os.path as osp
import sys

import yaml
from mmengine.config import Config

from mmpoolformer import analysis
from mmpoolformer.analysis import build_model

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
TASKS = ('detection', 'segmentation')
INDEX = 'model-index.yml'
PAPER = dict(Title='MetaFormer Is Actually What You Need for Vision',
             URL='https://arxiv.org/abs/2111.11418')
# (config model type, decode head type) -> collection
COLLECTIONS = {
    ('RetinaNet', None): 'RetinaNet',
    ('MaskRCNN', None): 'Mask R-CNN',
    ('EncoderDecoder', 'FPNHead'): 'Semantic FPN',
    ('EncoderDecoder', 'UPerHead'): 'UperNet',
}
ARCHITECTURE = {
    'RetinaNet': ['RetinaNet', 'FPN'],
    'Mask R-CNN': ['Mask R-CNN', 'FPN', 'RPN'],
    'Semantic FPN': ['Semantic FPN', 'FPN'],
    'UperNet': ['UperNet', 'PPM'],
}
DATASETS = dict(mmdet='COCO', mmseg='ADE20K')
# Published results: the PoolFormer paper's Tables 3 and 4 (COCO and
# ADE20K; the README's tables); nothing else is published for these
# recipes.
PUBLISHED = {
    ('RetinaNet', 'PoolFormer-S12'): {'box AP': 36.2},
    ('RetinaNet', 'PoolFormer-S24'): {'box AP': 38.9},
    ('RetinaNet', 'PoolFormer-S36'): {'box AP': 39.5},
    ('Mask R-CNN', 'PoolFormer-S12'): {'box AP': 37.3, 'mask AP': 34.6},
    ('Mask R-CNN', 'PoolFormer-S24'): {'box AP': 40.1, 'mask AP': 37.0},
    ('Mask R-CNN', 'PoolFormer-S36'): {'box AP': 41.0, 'mask AP': 37.7},
    ('Semantic FPN', 'PoolFormer-S12'): {'mIoU': 37.1},
    ('Semantic FPN', 'PoolFormer-S24'): {'mIoU': 40.3},
    ('Semantic FPN', 'PoolFormer-S36'): {'mIoU': 42.0},
    ('Semantic FPN', 'PoolFormer-M36'): {'mIoU': 42.4},
    ('Semantic FPN', 'PoolFormer-M48'): {'mIoU': 42.7},
}
TASK_OF_METRIC = {'box AP': 'Object Detection',
                  'mask AP': 'Instance Segmentation',
                  'mIoU': 'Semantic Segmentation'}


def configs(task):
    """The configs of ``task`` ('detection' or 'segmentation'), as paths
    relative to the repository, sorted."""
    paths = glob.glob(osp.join(REPO, 'configs', task, '*.py'))
    return sorted(osp.relpath(p, REPO) for p in paths)


def collection_of(cfg):
    head = cfg.model.get('decode_head', {}).get('type')
    key = (cfg.model.type, head)
    if key not in COLLECTIONS:
        raise ValueError(f'no collection for model {key[0]!r} with decode '
                         f'head {head!r}; known: {sorted(COLLECTIONS)}')
    return COLLECTIONS[key]


def backbone_name(backbone):
    arch = backbone.arch
    if not isinstance(arch, str):
        raise ValueError(f'backbone arch must be a name in an indexed '
                         f'config, got {arch!r}')
    return f'{backbone.type}-{arch.upper()}'


def count_params(path):
    model, _ = build_model(osp.join(REPO, path))
    return sum(p.numel() for p in model.parameters())


def count_flops(path):
    """(FLOPs, input size 'HxW') of the config's whole model."""
    flops, _, shape = analysis.count_flops(osp.join(REPO, path))
    return int(flops), f'{shape[0]}x{shape[1]}'


def entry(path, params=None, flops=None):
    """The metafile entry of config ``path`` (relative to the repository).
    ``flops`` is ``(FLOPs, 'HxW')``, ``(None, None)`` for none; ``params``
    and ``flops`` are counted when not given."""
    cfg = Config.fromfile(osp.join(REPO, path))
    collection = collection_of(cfg)
    backbone = backbone_name(cfg.model.backbone)
    scope = cfg.default_scope
    params = count_params(path) if params is None else params
    flops, size = count_flops(path) if flops is None else flops
    metadata = {'Backbone': backbone, 'Parameters': params}
    if flops is not None:
        metadata.update({'FLOPs': flops, 'FLOPs Input Size': size})
    metadata['Training Data'] = DATASETS[scope]
    if 'max_epochs' in cfg.train_cfg:
        metadata['Epochs'] = cfg.train_cfg.max_epochs
    else:
        metadata['Iterations'] = cfg.train_cfg.max_iters
    init = cfg.model.backbone.get('init_cfg') or {}
    if init.get('checkpoint'):
        metadata['ImageNet Weights'] = init['checkpoint']
    item = {
        'Name': osp.splitext(osp.basename(path))[0],
        'In Collection': collection,
        'Config': path,
        'Metadata': metadata,
    }
    metrics = PUBLISHED.get((collection, backbone))
    if metrics:
        item['Results'] = [
            dict(Task=TASK_OF_METRIC[name], Dataset=DATASETS[scope],
                 Metrics={name: value}) for name, value in metrics.items()
        ]
    return item


def metafile(task, old=None, recount=False, flops=True, save=None,
             log=print):
    """The metafile of ``task`` as a dict. Entries of ``old`` (a loaded
    metafile) keep their FLOPs while the parameter count is unchanged;
    the others are counted, unless ``flops=False`` (they then get none).
    ``save(metafile)`` is called before counting and after each count, so
    that an interrupted run keeps what it counted."""
    kept = {m['Name']: m['Metadata'] for m in (old or {}).get('Models', [])}
    models, todo = [], []
    for path in configs(task):
        name = osp.splitext(osp.basename(path))[0]
        params = count_params(path)
        before = kept.get(name, {})
        if not recount and before.get('Parameters') == params and \
                'FLOPs' in before:
            counted = before['FLOPs'], before['FLOPs Input Size']
        else:
            counted = None, None
            todo.append((len(models), path, params))
        models.append(entry(path, params, counted))
    names = sorted({m['In Collection'] for m in models})
    collections = [
        {'Name': name,
         'Metadata': {'Training Data': DATASETS[
             'mmdet' if task == 'detection' else 'mmseg'],
             'Architecture': ARCHITECTURE[name]},
         'Paper': dict(PAPER)}
        for name in names
    ]
    result = {'Collections': collections, 'Models': models}
    if not flops:
        return result
    for i, path, params in todo:
        if save:
            save(result)
        log(f'counting FLOPs of {path}')
        models[i] = entry(path, params, count_flops(path))
    return result


def metafile_path(task):
    return osp.join('configs', task, 'metafile.yml')


def index():
    return {'Import': [metafile_path(t) for t in TASKS]}


def load(path):
    full = osp.join(REPO, path)
    if not osp.exists(full):
        return None
    with open(full) as f:
        return yaml.safe_load(f)


def dump(data):
    return yaml.safe_dump(data, sort_keys=False, width=79,
                          allow_unicode=True)


def write(path, data, check=False):
    """Write ``data`` to ``path`` unless it holds it already; returns
    whether it differed."""
    text = dump(data)
    full = osp.join(REPO, path)
    if osp.exists(full):
        with open(full) as f:
            if f.read() == text:
                return False
    if not check:
        with open(full, 'w') as f:
            f.write(text)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--task', choices=TASKS, nargs='+', default=TASKS,
                        help='metafiles to write (default: all)')
    parser.add_argument('--recount', action='store_true',
                        help="count every config's FLOPs again")
    parser.add_argument('--no-flops', action='store_true',
                        help='count no FLOPs: new entries get none')
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 if a file would change '
                        '(FLOPs are not counted)')
    args = parser.parse_args(argv)
    stale = set()

    def save(path, data):
        if write(path, data, args.check):
            stale.add(path)

    save(INDEX, index())
    for task in args.task:
        path = metafile_path(task)
        save(path, metafile(task, load(path), args.recount,
                            flops=not (args.check or args.no_flops),
                            save=lambda data, p=path: save(p, data)))
    for path in sorted(stale):
        print(f'{path}: {"stale" if args.check else "written"}')
    if args.check and stale:
        sys.exit(1)


if __name__ == '__main__':
    main()
