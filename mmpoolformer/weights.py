"""Reading ImageNet weights of PoolFormer and the MetaFormer baselines in any
of the published layouts.

PoolFormer (v1) layouts (:func:`convert`; all layouts are read after
unwrapping ``state_dict``/``model`` and stripping ``module.`` and
``backbone.`` prefixes):

* official (sail-sg/poolformer): ``patch_embed.proj``, ``network.{0..6}``,
  classifier ``norm`` and ``head``;
* mmpretrain: the official names under ``backbone.``, output norms
  ``norm{0,2,4,6}``, classifier ``head.fc``;
* timm: ``stem.conv``, ``stages.{s}.downsample.conv``,
  ``stages.{s}.blocks.{j}``, ``layer_scale{1,2}.scale``, classifier ``head``;
* mmpoolformer: ``stem``, ``stages.{s}.downsample``, ``stages.{s}.blocks.{j}``,
  output norms ``norm{0..3}``.

The MetaFormer baselines (PoolFormerV2, ConvFormer, CAFormer, ...) read their
own layouts (:func:`convert_metaformer`):

* official (sail-sg/metaformer): ``downsample_layers.{0..3}`` (``conv``,
  ``pre_norm``/``post_norm``), ``stages.{s}.{j}``, channels-last
  ``nn.Linear`` MLPs and pointwise convs, classifier ``norm`` and ``head``;
* timm: ours (below) plus the classifier ``head``;
* mmpoolformer: ``stem.{conv,norm}``, ``stages.{s}.downsample.{norm,conv}``,
  ``stages.{s}.blocks.{j}``, output norms ``norm{0..3}``; 1x1 convs in the
  MLPs of stages whose mixer is convolutional or pooling or identity,
  ``nn.Linear`` where it works on tokens (attention ``qkv``, random mixing
  ``random_matrix``), as timm has them.

Files are ``.pth`` (read by :mod:`mmpoolformer.safeload`, which runs nothing
from a file on any torch) or ``.safetensors``, paths or http(s) URLs; a URL is downloaded once into torch's
hub cache and then read like a local file (:func:`download`), so no reader
here runs code from a file. Each backbone hands :func:`load_pretrained` the
converter of its layouts (:func:`convert`, :func:`convert_metaformer`), so
PoolFormer v1 and v2 checkpoints, which share key names, are never mixed up,
and each says which type reads the other's.

Classifier weights (and a detector's neck and heads) are dropped. Loading into
a model is strict about everything else: a shape mismatch, a missing block or
an unknown key is an error, never a silent skip.
"""
import logging
import os
import re
from typing import Callable, Dict, List, Optional, Tuple
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from . import safeload

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

FORMATS = ('official', 'mmpretrain', 'timm', 'mmpoolformer')
METAFORMER_FORMATS = ('official', 'timm', 'mmpoolformer')


class CheckpointFormatError(ValueError):
    """A checkpoint that cannot be read as the target backbone's weights."""


def is_url(path) -> bool:
    """Whether ``path`` is a URL that :func:`download` fetches: http(s)
    (and ``file://``, as torch's downloader reads it)."""
    return str(path).startswith(('http://', 'https://', 'file://'))


def download(url: str) -> str:
    """The local copy of ``url`` in torch's hub cache
    (``<torch.hub.get_dir()>/checkpoints``), downloaded if absent.

    The name is the URL's path with ``/`` as ``_`` (hub ``.safetensors``
    files all share the name ``model.safetensors``). Several processes
    asking at once (the ranks of one job) download once: one takes a file
    lock and downloads to a temporary file in the cache, then renames it
    into place, which is atomic; the others wait on the lock and find the
    file. A file under the final name is thus always complete.
    """
    name = '_'.join(urlparse(url).path.strip('/').split('/'))
    if not name:
        raise ValueError(f'{url}: the URL names no file')
    folder = os.path.join(torch.hub.get_dir(), 'checkpoints')
    path = os.path.join(folder, name)
    if os.path.isfile(path):
        return path
    os.makedirs(folder, exist_ok=True)
    with open(path + '.lock', 'a') as lock:
        if fcntl is not None:  # POSIX; elsewhere ranks may each download
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.isfile(path):
                part = f'{path}.{os.getpid()}.part'
                try:
                    torch.hub.download_url_to_file(url, part,
                                                   progress=os.isatty(2))
                    os.replace(part, path)
                finally:
                    if os.path.exists(part):
                        os.remove(part)
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def load_file(path: str, map_location='cpu'):
    """Load a local checkpoint file without running code, the same on every
    torch: ``.safetensors`` with the safetensors library, anything else with
    :func:`mmpoolformer.safeload.load` (never ``torch.load``, whose
    weights-only loader can be bypassed on older torch; see there).
    ``map_location`` as for :func:`torch.load` (for ``.safetensors``: a
    device or None).

    Raises:
        FileNotFoundError if ``path`` is not a file;
        :class:`~mmpoolformer.safeload.RefusedCheckpoint` for a file that
        holds more than tensors and plain data.
    """
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path} can not be found.')
    if path.endswith('.safetensors'):
        try:
            from safetensors.torch import load_file as load_safetensors
        except ImportError as e:
            raise ImportError(
                f'{path}: reading .safetensors files needs the safetensors '
                f'package: pip install safetensors') from e
        if not (map_location is None
                or isinstance(map_location, (str, torch.device))):
            raise ValueError(
                f'{path}: map_location for a .safetensors file must be a '
                f'device or None, got {map_location!r}')
        return load_safetensors(path, device=str(map_location or 'cpu'))
    return safeload.load(path, map_location=map_location)


def read_checkpoint(path: str, map_location='cpu') -> dict:
    """Load a checkpoint file or URL (downloaded first, see
    :func:`download`) with :func:`load_file`, which cannot run code. Other
    ``scheme://`` names go to mmengine's ``CheckpointLoader``, whose
    loaders :mod:`mmpoolformer.compat` makes equally safe.

    Raises:
        FileNotFoundError / CheckpointFormatError naming ``path``.
    """
    try:
        if is_url(path):
            ckpt = load_file(download(path), map_location)
        elif '://' in str(path):
            ckpt = CheckpointLoader.load_checkpoint(
                path, map_location=map_location)
        else:
            ckpt = load_file(path, map_location)
    except FileNotFoundError as e:
        raise FileNotFoundError(f'Checkpoint not found: {path}') from e
    except safeload.RefusedCheckpoint as e:
        raise CheckpointFormatError(
            f'{e}. Only tensors and plain data are read from checkpoints; '
            f'nothing in the file was run.') from e
    except Exception as e:  # noqa: BLE001 - re-raised with the path
        hint = ''
        if isinstance(e, URLError):
            hint = (' (offline? download it elsewhere and set '
                    'model.backbone.init_cfg.checkpoint to the local file)')
        raise CheckpointFormatError(
            f'Cannot read checkpoint {path}: '
            f'{type(e).__name__}: {e}{hint}') from e
    if not isinstance(ckpt, dict):
        raise CheckpointFormatError(
            f'{path} holds a {type(ckpt).__name__}, not a state dict')
    return ckpt


def _unwrap(ckpt: dict, prefix: Optional[str] = None
            ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Return the backbone's tensors and the keys dropped on the way: those
    under ``prefix`` if given (mmengine's ``Pretrained`` meaning), else those
    under ``backbone.`` if any, else all."""
    for key in ('state_dict', 'model'):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    state = {}
    for k, v in ckpt.items():
        if not torch.is_tensor(v):
            raise CheckpointFormatError(
                f'key {k!r} holds a {type(v).__name__}, not a tensor: this '
                f'is not a state dict')
        state[re.sub(r'^module\.', '', k)] = v
    if prefix is None:
        prefix = 'backbone.' if any(k.startswith('backbone.')
                                    for k in state) else ''
    elif not any(k.startswith(prefix) for k in state):
        raise CheckpointFormatError(
            f'no key starts with prefix {prefix!r} (first keys: '
            f'{sorted(state)[:5]})')
    dropped = [k for k in state if not k.startswith(prefix)]
    state = {k[len(prefix):]: v for k, v in state.items()
             if k.startswith(prefix)}
    return state, dropped


def detect_format(keys) -> Optional[str]:
    """Name the layout of backbone keys (prefixes already stripped)."""
    keys = set(keys)
    if 'stem.conv.weight' in keys:
        return 'timm'
    if 'stem.weight' in keys:
        return 'mmpoolformer'
    if 'patch_embed.proj.weight' in keys:
        if any(re.match(r'norm\d+\.', k) for k in keys):
            return 'mmpretrain'
        return 'official'
    return None


def _rename(key: str, fmt: str, classifier: bool) -> Optional[str]:
    """Map one key to mmpoolformer's layout; None drops it."""
    if fmt == 'mmpoolformer':
        return key
    if fmt == 'timm':
        if key.startswith('head.'):
            return None
        key = key.replace('stem.conv.', 'stem.')
        key = re.sub(r'downsample\.conv\.', 'downsample.', key)
        return re.sub(r'layer_scale(\d)\.scale$', r'layer_scale\1', key)
    # official and mmpretrain share the network.{0..6} layout
    if key.startswith('head.') or key.startswith('norm.'):
        return None
    m = re.match(r'norm(\d+)\.(.*)', key)
    if m:
        idx = int(m.group(1))
        # A classifier's norm6 feeds the pooled head: not a dense output.
        if idx % 2 or (classifier and idx == 6):
            return None
        return f'norm{idx // 2}.{m.group(2)}'
    key = key.replace('patch_embed.proj.', 'stem.')
    key = re.sub(r'layer_scale_(\d)$', r'layer_scale\1', key)
    m = re.match(r'network\.(\d+)\.(.*)', key)
    if m:
        idx, rest = int(m.group(1)), m.group(2)
        if idx % 2 == 0:
            return f'stages.{idx // 2}.blocks.{rest}'
        return f'stages.{idx // 2 + 1}.downsample.' + \
            rest.replace('proj.', '', 1)
    return key


def _unrecognised(state, family: str, formats,
                  hint: str = '') -> CheckpointFormatError:
    return CheckpointFormatError(
        f'Unrecognised {family} checkpoint layout (first keys: '
        f'{sorted(state)[:5]}); expected one of {formats}{hint}')


def convert(ckpt: dict, prefix: Optional[str] = None
            ) -> Tuple[Dict[str, torch.Tensor], List[str], str]:
    """Convert a checkpoint dict (the backbone's keys under ``prefix``, see
    :func:`_unwrap`) to mmpoolformer's backbone layout.

    Returns:
        (state_dict, dropped_keys, format_name)
    """
    state, dropped = _unwrap(ckpt, prefix)
    baseline = detect_metaformer_format(state)
    if baseline is not None:
        # timm's MetaFormer layout also has stem.conv: say so before
        # detect_format takes it for v1's timm layout
        raise CheckpointFormatError(
            f'these are MetaFormer-baseline weights ({baseline} layout), '
            f'not PoolFormer (v1) ones: read them with type '
            f'{metaformer_type(state)}')
    fmt = detect_format(state)
    if fmt is None:
        raise _unrecognised(state, 'PoolFormer', FORMATS)
    classifier = any(k.startswith('head.') for k in dropped) or any(
        k.startswith('head.') for k in state)
    out = {}
    for key, value in state.items():
        new = _rename(key, fmt, classifier)
        if new is None:
            dropped.append(key)
        else:
            out[new] = value
    return out, dropped, fmt


def detect_metaformer_format(keys) -> Optional[str]:
    """Name the layout of MetaFormer-baseline keys (prefixes stripped)."""
    keys = set(keys)
    if 'downsample_layers.0.conv.weight' in keys:
        return 'official'
    if 'stem.norm.weight' in keys:
        return 'timm' if any(k.startswith('head.') for k in keys) \
            else 'mmpoolformer'
    return None


def metaformer_type(state) -> str:
    """The MetaFormer-baseline type(s) whose weights ``state`` holds, told
    by the token mixers' parameters (pooling and identity have none)."""
    keys = ' '.join(state)
    if 'token_mixer.qkv' in keys:
        return 'CAFormer'
    if 'token_mixer.pwconv' in keys:
        return 'ConvFormer'
    if 'token_mixer.random_matrix' in keys:
        return 'RandFormer'
    return 'PoolFormerV2 or IdentityFormer'


def _from_official(key: str, value: torch.Tensor,
                   token_stages) -> Tuple[str, torch.Tensor]:
    """Map one official MetaFormer key (and its Linear weight, where our
    layout has a 1x1 conv) to mmpoolformer's layout."""
    m = re.match(r'downsample_layers\.(\d+)\.(pre_norm|post_norm|conv)\.(.*)',
                 key)
    if m:
        idx, part, rest = int(m.group(1)), m.group(2), m.group(3)
        where = 'stem' if idx == 0 else f'stages.{idx}.downsample'
        return f'{where}.{"conv" if part == "conv" else "norm"}.{rest}', value
    m = re.match(r'stages\.(\d+)\.(\d+)\.(.*)', key)
    if m:
        stage, rest = int(m.group(1)), m.group(3)
        pointwise = re.fullmatch(r'(mlp\.fc|token_mixer\.pwconv)\d\.weight',
                                 rest)
        if pointwise and value.dim() == 2 and stage not in token_stages:
            value = value[:, :, None, None]
        return f'stages.{stage}.blocks.{m.group(2)}.{rest}', value
    return key, value


def convert_metaformer(
        ckpt: dict, prefix: Optional[str] = None
) -> Tuple[Dict[str, torch.Tensor], List[str], str]:
    """Convert a MetaFormer-baseline checkpoint dict (the backbone's keys
    under ``prefix``, see :func:`_unwrap`) to mmpoolformer's backbone
    layout.

    Returns:
        (state_dict, dropped_keys, format_name)
    """
    state, dropped = _unwrap(ckpt, prefix)
    fmt = detect_metaformer_format(state)
    if fmt is None:
        hint = ''
        if detect_format(state) is not None:
            hint = '; these are PoolFormer (v1) weights, for type PoolFormer'
        raise _unrecognised(state, 'MetaFormer', METAFORMER_FORMATS, hint)
    token_stages = {
        int(m.group(1)) for m in (re.match(
            r'stages\.(\d+)\.\d+\.token_mixer\.(qkv|random_matrix)', k)
            for k in state) if m}
    out = {}
    for key, value in state.items():
        if key.startswith('head.') or (fmt == 'official'
                                       and key.startswith('norm.')):
            dropped.append(key)
            continue
        if fmt == 'official':
            key, value = _from_official(key, value, token_stages)
        out[key] = value
    return out, dropped, fmt


def is_metaformer_checkpoint(ckpt: dict) -> bool:
    """Whether ``ckpt`` holds MetaFormer-baseline (not PoolFormer v1)
    weights, for tools that have no model to ask."""
    return detect_metaformer_format(_unwrap(ckpt)[0]) is not None


def _not_built(key: str, model) -> bool:
    """Keys of stages or output norms this model left out by design."""
    m = re.match(r'stages\.(\d+)\.', key)
    if m:
        return int(m.group(1)) >= len(model.stages)
    m = re.match(r'norm(\d+)\.', key)
    return bool(m) and int(m.group(1)) not in model.out_indices


def _fit(model, state: Dict[str, torch.Tensor], fresh_norms: bool,
         where: str = '') -> Tuple[List[str], List[str], List[str]]:
    """How ``state`` (mmpoolformer layout) fits ``model``: (problems, their
    keys named with the prefix ``where``; unused keys of parts the model
    left out by design; output norms the state lacks, which are problems
    unless ``fresh_norms``)."""
    own = model.state_dict()
    unused = [k for k in state if k not in own and _not_built(k, model)]
    unknown = [k for k in state if k not in own and k not in unused]
    missing = [k for k in own if k not in state]
    new_norms = [k for k in missing if re.match(r'norm\d+\.', k)] \
        if fresh_norms else []
    missing = [k for k in missing if k not in new_norms]
    mismatched = [f'{where}{k}: checkpoint {tuple(state[k].shape)} vs '
                  f'model {tuple(own[k].shape)}' for k in state
                  if k in own and state[k].shape != own[k].shape]
    problems = []
    if mismatched:
        problems.append('shape mismatch: ' + '; '.join(mismatched))
    if missing:
        problems.append('missing from checkpoint: ' +
                        _brief([where + k for k in missing], 12))
    if unknown:
        problems.append('not in the model: ' +
                        _brief([where + k for k in unknown], 12))
    return problems, unused, new_norms


def load_pretrained(model, path: str, convert: Callable,
                    prefix: Optional[str] = None, logger: str = 'current',
                    map_location='cpu') -> None:
    """Load weights from ``path`` (file or URL; the keys under ``prefix`` if
    given) into ``model``, a :class:`~mmpoolformer.models.base.DenseBackbone`,
    in any layout ``convert`` reads (:func:`convert` for PoolFormer,
    :func:`convert_metaformer` for the baselines). ``map_location`` is
    where the file's tensors are read to (see :func:`load_file`), before
    they are copied into the model.

    Output norms absent from ImageNet checkpoints keep their fresh init (the
    one place where that is allowed: whole models loaded by
    :func:`fit_backbone` must bring theirs); any other missing or unknown
    key, or a shape mismatch, raises.
    """
    name = type(model).__name__
    ckpt = read_checkpoint(path, map_location)
    try:
        state, dropped, fmt = convert(ckpt, prefix)
    except CheckpointFormatError as e:
        raise CheckpointFormatError(f'{path}: {e}') from e
    problems, unused, new_norms = _fit(model, state, fresh_norms=True)
    if problems:
        raise CheckpointFormatError(
            f'{path} ({fmt} layout) does not fit this {name} (check '
            f'arch): ' + ' | '.join(problems))
    for k in unused:
        state.pop(k)
    # the fresh norms go in as they are, so that the load is complete (the
    # backbone's own check, fit_backbone, sees every tensor)
    own = model.state_dict()
    state.update({k: own[k] for k in new_norms})
    model.load_state_dict(state)
    print_log(
        f'Loaded {name} weights from {path} ({fmt} layout): '
        f'{len(state) - len(new_norms)} tensors; dropped '
        f'{len(dropped) + len(unused)} unused keys '
        f'{_brief(dropped + unused)}; freshly initialised: '
        f'{_brief(new_norms)}', logger=logger)


def _hint(missing: List[str]) -> str:
    """Why a whole model's checkpoint may lack these backbone keys."""
    found = [re.match(r'norm(\d+)\.', k) for k in missing]
    if not missing or not all(found):
        return ''
    if {m.group(1) for m in found} == {'0'}:
        return ('. A RetinaNet trained with FORK_LAST3 (the authors\' '
                'release) has no stride-4 norm: build the backbone with '
                'out_indices=(1, 2, 3), as configs/detection/retinanet_'
                'poolformer_*.py do')
    return ('. Only output norms are missing, and the file has others: '
            'build the backbone with the out_indices it was trained with')


def fit_backbone(model, state: Dict[str, torch.Tensor], convert: Callable,
                 where: str = '', kept: Optional[str] = None
                 ) -> Dict[str, torch.Tensor]:
    """The backbone tensors ``state`` (one backbone's keys with its prefix
    ``where`` stripped, in any layout ``convert`` reads) as ``model``'s own
    state dict, with every parameter and buffer of ``model`` in it at its
    shape; tensors of stages and output norms the model leaves out by
    design (e.g. the authors' stride-4 norm given to a RetinaNet built with
    ``out_indices=(1, 2, 3)``) are dropped.

    This is how every whole-model checkpoint reaches a
    :class:`~mmpoolformer.models.base.DenseBackbone` (mmengine's
    ``load_checkpoint``, ``load_from``, ``resume``, ``init_detector``,
    ``init_model``, the inferencers), whatever their own ``strict``. Two
    loads return less, logged, and leave the rest to the caller's
    ``strict`` (torch and mmengine report the keys missing; strict
    raises):

    * an ImageNet file (every block, no output norm at all): without its
      output norms, which keep their init;
    * a file with no usable tensor for the backbone (none under ``where``,
      or another architecture's, left in place for the caller to report
      as unexpected) when ``kept`` names the weights the backbone already
      holds (its ``init_cfg`` loaded them in this process): nothing, so
      the backbone keeps them. Without ``kept`` that is an error: the
      backbone would stay random.

    Raises:
        CheckpointFormatError naming the keys (with ``where``) that did not
        land, or saying the tensors are another architecture's.
    """
    name = type(model).__name__
    if not state:
        if kept is not None:
            print_log(f'{name} keeps the weights its init_cfg loaded from '
                      f'{kept}: the checkpoint has no tensor under '
                      f'{where!r}', logger='current', level=logging.WARNING)
            return {}
        raise CheckpointFormatError(
            f'the checkpoint has no tensor under {where!r} for this {name}: '
            f'its backbone would stay random')
    try:
        ours, dropped, fmt = convert(state, '')
    except CheckpointFormatError as e:
        keys = [where + k for k in list(state)[:4]]  # the file's order
        if kept is not None:
            print_log(f'{name} keeps the weights its init_cfg loaded from '
                      f'{kept}: skipped the checkpoint\'s {len(state)} '
                      f'tensors under {where!r} ({keys} ...), weights of '
                      f'another architecture: {e}', logger='current',
                      level=logging.WARNING)
            return state
        raise CheckpointFormatError(
            f'the tensors under {where!r} ({keys}) are weights of another '
            f'architecture, not of this {name}: {e}') from e
    # an ImageNet file has no output norm at all; a file with some (the
    # FORK_LAST3 RetinaNets lack norm0) must bring every one the model has
    fresh = not any(re.match(r'norm\d+\.', k) for k in ours)
    problems, unused, new_norms = _fit(model, ours, fresh_norms=fresh,
                                       where=where)
    if problems:
        missing = [k for k in model.state_dict() if k not in ours]
        # the authors' dense models share mmpretrain's names
        layout = "the authors' (mmpretrain)" if fmt == 'mmpretrain' else fmt
        raise CheckpointFormatError(
            f'the checkpoint ({layout} layout under {where!r}) does not fill '
            f'this {name} (check arch and out_indices): '
            + ' | '.join(problems) + _hint(missing))
    for k in unused:
        ours.pop(k)
    if new_norms:
        print_log(
            f'{name}: loaded {len(ours)} tensors ({fmt} layout, an ImageNet '
            f'file) under {where!r}; dropped {_brief(dropped + unused)}; '
            f'output norms not in the file, left at their init: '
            f'{_brief([where + k for k in new_norms])}', logger='current',
            level=logging.WARNING)
    return ours


def _brief(keys: List[str], n: int = 6) -> str:
    keys = sorted(keys)
    more = f' ... (+{len(keys) - n})' if len(keys) > n else ''
    return '[' + ', '.join(repr(k) for k in keys[:n]) + more + ']'


#: Where mmcv 1.x (mmdet 2.x, mmseg 0.x) kept class metadata in ``meta``,
#: and where mmengine's libraries read it (``meta['dataset_meta']``).
_OLD_META = {'CLASSES': 'classes', 'PALETTE': 'palette'}


def is_whole_model(ckpt: dict) -> bool:
    """Whether ``ckpt`` holds a detector's or segmentor's weights (a
    ``backbone.`` and other parts besides a classifier ``head.``), not just
    a backbone's."""
    state, _ = _unwrap(ckpt, '')
    parts = {k.split('.', 1)[0] for k in state if '.' in k}
    return 'backbone' in parts and bool(parts - {'backbone', 'head'})


def convert_release(ckpt: dict) -> Tuple[dict, str, List[str]]:
    """A whole detector's or segmentor's checkpoint (such as the authors'
    mmdet 2.19 / mmseg 0.19 releases: mmcv 1.x's ``meta``, ``state_dict``,
    ``optimizer`` and apex's ``amp``) as an mmengine checkpoint of ours:
    ``state_dict`` with the backbone renamed to mmpoolformer's layout and
    the other parts as they are (mmdet 2.19 / mmseg 0.19 name the FPN,
    RetinaNet, Mask R-CNN and Semantic FPN tensors as mmdet 3.3 / mmseg 1.2
    do), and ``meta`` with ``CLASSES``/``PALETTE`` moved into
    ``dataset_meta``. The optimizer and amp states are dropped.

    Returns:
        (checkpoint, backbone format name, dropped backbone keys)
    """
    state, _ = _unwrap(ckpt, '')
    backbone = {k[len('backbone.'):]: v for k, v in state.items()
                if k.startswith('backbone.')}
    to_ours = convert_metaformer if detect_metaformer_format(backbone) \
        else convert
    ours, dropped, fmt = to_ours(backbone, '')
    out = {f'backbone.{k}': v for k, v in ours.items()}
    out.update({k: v for k, v in state.items()
                if not k.startswith('backbone.')})
    meta = dict(ckpt.get('meta') or {})
    dataset_meta = dict(meta.pop('dataset_meta', None) or {})
    for old, new in _OLD_META.items():
        if old in meta:
            dataset_meta.setdefault(new, meta.pop(old))
    if dataset_meta:
        meta['dataset_meta'] = dataset_meta
    return dict(meta=meta, state_dict=out), fmt, dropped
