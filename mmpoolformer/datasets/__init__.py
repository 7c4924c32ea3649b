"""Datasets of mmpoolformer's own: the demo's synthetic shapes.

The names are read from :mod:`.shapes` on first use, not at import: importing
it here would put it in ``sys.modules`` before ``python -m
mmpoolformer.datasets.shapes`` runs it as ``__main__``, which runpy warns
about.
"""
import importlib

__all__ = ['SHAPES', 'SEG_CLASSES', 'PALETTE', 'SEG_PALETTE', 'make_dataset']


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module('.shapes', __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + __all__)
