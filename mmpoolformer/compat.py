"""Fixes to other libraries, applied once by :func:`apply` when
``mmpoolformer`` is imported. Nothing else in the package changes another
library.

1. Not changed: torch's own weights-only loader. torch >= 2.6 loads with
   ``weights_only=True`` by default and refuses the numpy objects in
   mmengine's checkpoints. Allowing them there (``add_safe_globals``) would
   let torch's unpickler call numpy's ``dtype.__setstate__`` on a dtype an
   array already uses, which a crafted file turns into reads and writes
   past the array's buffer; torch offers no hook to check that ``BUILD``.
   So other libraries' direct ``torch.load`` calls behave as on stock
   torch, and every load this package touches goes through ``safeload``.

2. mmengine's checkpoint loaders. mmengine reads every checkpoint
   (``load_from``, ``resume``, ``init_cfg`` of its own ``Pretrained``,
   mmdet's/mmseg's ``init_model`` and inferencers) through
   ``CheckpointLoader``, which picks a loader by the name's prefix; ``''``
   (local files) is the default. Its local loader calls ``torch.load``
   without ``weights_only``, the full unpickler on torch < 2.6 or with
   ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` set; its http(s) loader, and the
   model-zoo names (``torchvision://``, ``open-mmlab://``, ``mmcls://``)
   that resolve to URLs, go to ``torch.hub.load_state_dict_from_url``,
   which passes ``weights_only=False``: a file fetched from a URL could run
   code. We register, with ``CheckpointLoader.register_scheme(...,
   force=True)``, loaders for those prefixes that read with
   :func:`mmpoolformer.weights.load_file` (:mod:`mmpoolformer.safeload`) and
   download with :func:`mmpoolformer.weights.download` (one download per
   cache, never a half-written file read). mmengine's ``pavi://`` and
   ``s3://`` loaders are left as they are (``torch.load``'s default).

3. mmsegmentation 1.2.2's inferencer and class metadata.
   ``mmseg.apis.init_model`` gives a checkpoint without class metadata the
   classes of the dataset whose class count matches the model's
   ``num_classes`` (150 -> ADE20K), but ``MMSegInferencer`` always falls back
   to Cityscapes, so an ADE20K model would be drawn with Cityscapes' names and
   colours. We give the inferencer init_model's rule. Checkpoints that carry
   ``dataset_meta`` (all that tools/train.py writes) are untouched.

4. ``_base_ = 'mmpoolformer::PATH'`` in a user's config. mmengine 0.10.7
   resolves ``pkg::`` only for the packages in its ``MODULE2PACKAGE`` table,
   finds ``.mim/configs`` next to the package's pip record (site-packages,
   even for an editable install of a checkout), and tags every dict of such
   a base with ``_scope_=pkg``, which sends e.g. a pipeline's
   ``PackSegInputs`` to a registry named mmpoolformer that has none. We
   resolve ``mmpoolformer::`` ourselves, in the ``.mim/configs`` of the
   package Python imported, and leave the scope alone: our configs are
   mmdet and mmseg configs and build in their ``default_scope``. Other
   ``pkg::`` paths go to mmengine as before.

5. mmdeploy's ONNX export (:mod:`mmpoolformer.deploy`): an exact
   ``adaptive_avg_pool2d`` (UperNet's pyramid pooling) for its inexact one,
   mmseg's ``Upsample`` with its size traced, an error for a segmentor whose
   test mode is ``'slide'`` (mmdeploy exports the whole image only),
   ``dynamo=False`` for its ``torch.onnx.export`` on torch >= 2.5 (2.9 made
   dynamo the default), and the ``_cast_Long`` symbolic that its RoIAlign
   imports and newer torch lacks.
   Applied when mmdeploy's modules are imported, before or after us.
"""
import importlib.machinery
import os
import os.path as osp
import sys

from mmengine.runner import checkpoint as mmengine_checkpoint

from . import deploy
from .weights import download, is_url, load_file


def load_from_local_safely(filename, map_location=None):
    """mmengine's local loader, reading with the weights-only unpickler."""
    return load_file(filename, map_location)


def load_from_http_safely(filename, map_location=None):
    """mmengine's http(s) loader: download once to torch's hub cache, then
    read like a local file."""
    return load_file(download(filename), map_location)


def load_from_zoo_safely(filename, map_location=None):
    """mmengine's model-zoo names (``torchvision://``, ``modelzoo://``,
    ``open-mmlab://``, ``openmmlab://``, ``mmcls://``) resolved by mmengine's
    own tables, then read like a URL or local file."""
    ckpt = mmengine_checkpoint
    scheme, name = filename.split('://', 1)
    if scheme in ('torchvision', 'modelzoo'):
        url = ckpt.get_torchvision_models()[name]
    elif scheme == 'mmcls':
        url = ckpt.get_mmcls_models()[name]
    else:
        name = ckpt.get_deprecated_model_names().get(name, name)
        url = ckpt.get_external_models()[name]
    if is_url(url):
        state = load_from_http_safely(url, map_location)
    else:  # open-mmlab names may point into mmengine's home
        state = load_file(os.path.join(ckpt._get_mmengine_home(), url),
                          map_location)
    if scheme == 'mmcls':
        state = ckpt._process_mmcls_checkpoint(state)
    return state


SAFE_LOADERS = {
    '': load_from_local_safely,
    ('http://', 'https://'): load_from_http_safely,
    ('torchvision://', 'modelzoo://', 'open-mmlab://', 'openmmlab://',
     'mmcls://'): load_from_zoo_safely,
}


def register_safe_loaders():
    """Replace mmengine's loaders for local files, URLs and model-zoo names
    by :data:`SAFE_LOADERS`. Idempotent."""
    for prefixes, loader in SAFE_LOADERS.items():
        mmengine_checkpoint.CheckpointLoader.register_scheme(
            prefixes, loader, force=True)


def _dataset_for(num_classes):
    from mmseg.utils import dataset_aliases, get_classes
    for name in dataset_aliases:
        if len(get_classes(name)) == num_classes:
            return name
    return 'cityscapes'


def patch_mmseg_inferencer(module):
    """Give ``module.MMSegInferencer`` init_model's class-metadata
    fallback. Idempotent."""
    cls = module.MMSegInferencer
    original = cls._load_weights_to_model
    if getattr(original, '_mmpoolformer', False):
        return

    def load_weights(self, model, checkpoint, cfg):
        original(self, model, checkpoint, cfg)
        meta = (checkpoint or {}).get('meta', {})
        head = getattr(model, 'decode_head', None)
        if checkpoint is not None and head is not None and not (
                'dataset_meta' in meta or 'CLASSES' in meta):
            from mmseg.utils import get_classes, get_palette
            name = _dataset_for(head.num_classes)
            model.dataset_meta = dict(classes=get_classes(name),
                                      palette=get_palette(name))

    load_weights._mmpoolformer = True
    cls._load_weights_to_model = load_weights


def resolve_own_configs():
    """Let ``_base_ = 'mmpoolformer::PATH'`` resolve. Idempotent."""
    from mmengine.config import Config
    resolve = Config._get_cfg_path
    if getattr(resolve, '_mmpoolformer', False):
        return

    def _get_cfg_path(cfg_path, filename):
        package, sep, path = cfg_path.partition('::')
        if not sep or package != 'mmpoolformer':
            return resolve(cfg_path, filename)
        root = osp.join(osp.dirname(osp.abspath(__file__)), '.mim', 'configs')
        full = osp.join(root, path)
        if not osp.isfile(full):
            hint = '' if osp.isdir(root) else (
                f' ({root} is made when the package is installed: '
                'pip install . or pip install -e .)')
            raise FileNotFoundError(f'{cfg_path}: no config {full}{hint}')
        return full, None

    _get_cfg_path._mmpoolformer = True
    Config._get_cfg_path = staticmethod(_get_cfg_path)


class _AfterImport:
    """A meta-path finder that runs ``patch(module)`` right after the module
    ``name`` is first imported, so that patching mmseg does not import it
    (2 s, and every mmseg model registered) in runs that never use it."""

    def __init__(self, name, patch):
        self.name, self.patch = name, patch

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                self.patch(module)

            spec.loader.exec_module = exec_module
        return spec


def when_imported(name, patch):
    """Apply ``patch`` to module ``name`` now if imported, else on import."""
    if name in sys.modules:
        patch(sys.modules[name])
    elif not any(isinstance(f, _AfterImport) and f.name == name
                 for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, patch))


def apply():
    """Apply every fix; called once, by ``import mmpoolformer``."""
    register_safe_loaders()
    resolve_own_configs()
    when_imported('mmseg.apis.mmseg_inferencer', patch_mmseg_inferencer)
    when_imported('mmdeploy.apis.onnx.export', deploy.export_with_torchscript)
    when_imported('mmdeploy.mmcv.ops.roi_align', deploy.give_cast_long)
    when_imported('mmdeploy.pytorch.functions.adaptive_pool',
                  deploy.register_adaptive_pool)
    when_imported('mmdeploy.codebase.mmseg', deploy.register_mmseg)
    when_imported('mmdeploy.codebase.mmdet', deploy.register_mmdet)
