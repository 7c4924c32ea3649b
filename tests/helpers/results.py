"""The results tables of configs/<task>/README.md, rendered from the model
index (configs/<task>/metafile.yml), so that a page's parameters, FLOPs and
published metrics are those of the index."""
import os.path as osp

import yaml

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))

FAMILIES = ('PoolFormer', 'PoolFormerV2', 'IdentityFormer', 'ConvFormer',
            'CAFormer')
SIZES = ('S12', 'S18', 'S24', 'S36', 'M36', 'M48', 'B36')
METRICS = {'detection': ('box AP', 'mask AP'), 'segmentation': ('mIoU', )}


def models(task):
    with open(osp.join(REPO, 'configs', task, 'metafile.yml')) as f:
        return yaml.safe_load(f)['Models']


def _order(model):
    family, size = model['Metadata']['Backbone'].split('-')
    return FAMILIES.index(family), SIZES.index(size)


def results_table(task, collection):
    """Markdown table of ``collection``'s configs: backbone, parameters,
    FLOPs, the published metrics ('-' where none) and the config."""
    metrics = METRICS[task]
    head = ['backbone', 'ImageNet weights', 'params (M)', 'FLOPs (G)',
            *metrics, 'config']
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * len(head)]
    rows = [m for m in models(task) if m['In Collection'] == collection]
    for m in sorted(rows, key=_order):
        meta = m['Metadata']
        found = {k: v for r in m.get('Results', [])
                 for k, v in r['Metrics'].items()}
        name = osp.basename(m['Config'])
        cells = [meta['Backbone'], f"[weights]({meta['ImageNet Weights']})",
                 f"{meta['Parameters'] / 1e6:.2f}",
                 f"{meta['FLOPs'] / 1e9:.1f}",
                 *[str(found.get(k, '-')) for k in metrics],
                 f'[{name}]({name})']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
