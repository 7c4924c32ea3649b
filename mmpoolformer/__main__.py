"""Run another library's tool with mmpoolformer imported first::

    python -m mmpoolformer TOOL.py [ARGS...]

mmdet's and mmseg's tools (``print_config.py``, ``browse_dataset.py``,
their ``train.py`` ...) read a config before running its ``custom_imports``,
so its ``_base_ = 'mmpoolformer::...'`` reaches mmengine before the import
has taught mmengine that prefix ("mmengine does not support to load
mmpoolformer config"). Run this way, the prefix resolves (see
:func:`mmpoolformer.compat.resolve_own_configs`).
"""
import os.path as osp
import runpy
import sys

import mmpoolformer  # noqa: F401  (resolves mmpoolformer:: paths)

USAGE = 'usage: python -m mmpoolformer TOOL.py [ARGS...]'


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help'):
        raise SystemExit(__doc__.strip())
    script = argv[0]
    if not (script.endswith('.py') and osp.isfile(script)):
        raise SystemExit(f'{USAGE}: TOOL.py must be a Python file, got '
                         f'{script!r}')
    # as `python TOOL.py ARGS` runs it
    sys.argv = argv
    sys.path.insert(0, osp.dirname(osp.abspath(script)))
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main()
