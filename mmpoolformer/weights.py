"""Reading PoolFormer ImageNet weights in any of the published layouts.

Recognised layouts (after unwrapping ``state_dict``/``model`` and stripping
``module.`` and ``backbone.`` prefixes):

* official (sail-sg/poolformer): ``patch_embed.proj``, ``network.{0..6}``,
  classifier ``norm`` and ``head``;
* mmpretrain: the official names under ``backbone.``, output norms
  ``norm{0,2,4,6}``, classifier ``head.fc``;
* timm: ``stem.conv``, ``stages.{s}.downsample.conv``,
  ``stages.{s}.blocks.{j}``, ``layer_scale{1,2}.scale``, classifier ``head``;
* mmpoolformer: ``stem``, ``stages.{s}.downsample``, ``stages.{s}.blocks.{j}``,
  output norms ``norm{0..3}``.

Classifier weights (and a detector's neck and heads) are dropped. Loading into
a model is strict about everything else: a shape mismatch, a missing block or
an unknown key is an error, never a silent skip.
"""
import re
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

FORMATS = ('official', 'mmpretrain', 'timm', 'mmpoolformer')


class CheckpointFormatError(ValueError):
    """A checkpoint that cannot be read as PoolFormer weights."""


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint file or URL with torch's safe (weights-only) loader.

    Raises:
        FileNotFoundError / CheckpointFormatError naming ``path``.
    """
    try:
        ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    except FileNotFoundError as e:
        raise FileNotFoundError(f'PoolFormer checkpoint not found: {path}') \
            from e
    except Exception as e:  # noqa: BLE001 - re-raised with the path
        hint = ''
        if '://' in str(path):
            hint = (' (offline? download it elsewhere and set '
                    'model.backbone.init_cfg.checkpoint to the local file)')
        raise CheckpointFormatError(
            f'Cannot read PoolFormer checkpoint {path}: '
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


def convert(ckpt: dict, prefix: Optional[str] = None
            ) -> Tuple[Dict[str, torch.Tensor], List[str], str]:
    """Convert a checkpoint dict (the backbone's keys under ``prefix``, see
    :func:`_unwrap`) to mmpoolformer's backbone layout.

    Returns:
        (state_dict, dropped_keys, format_name)
    """
    state, dropped = _unwrap(ckpt, prefix)
    fmt = detect_format(state)
    if fmt is None:
        sample = sorted(state)[:5]
        raise CheckpointFormatError(
            f'Unrecognised PoolFormer checkpoint layout (first keys: '
            f'{sample}); expected one of {FORMATS}')
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


def _not_built(key: str, model) -> bool:
    """Keys of stages or output norms this model left out by design."""
    m = re.match(r'stages\.(\d+)\.', key)
    if m:
        return int(m.group(1)) >= len(model.stages)
    m = re.match(r'norm(\d+)\.', key)
    return bool(m) and int(m.group(1)) not in model.out_indices


def load_pretrained(model, path: str, prefix: Optional[str] = None,
                    logger: str = 'current') -> None:
    """Load PoolFormer weights from ``path`` (file or URL; the keys under
    ``prefix`` if given) into ``model``.

    Output norms absent from ImageNet checkpoints keep their fresh init; any
    other missing or unknown key, or a shape mismatch, raises.
    """
    ckpt = read_checkpoint(path)
    try:
        state, dropped, fmt = convert(ckpt, prefix)
    except CheckpointFormatError as e:
        raise CheckpointFormatError(f'{path}: {e}') from e
    own = model.state_dict()
    unused = [k for k in state if k not in own and _not_built(k, model)]
    unknown = [k for k in state if k not in own and k not in unused]
    missing = [k for k in own if k not in state]
    new_norms = [k for k in missing if re.match(r'norm\d+\.', k)]
    missing = [k for k in missing if k not in new_norms]
    mismatched = [f'{k}: checkpoint {tuple(state[k].shape)} vs model '
                  f'{tuple(own[k].shape)}' for k in state
                  if k in own and state[k].shape != own[k].shape]
    problems = []
    if mismatched:
        problems.append('shape mismatch: ' + '; '.join(mismatched))
    if missing:
        problems.append(f'missing from checkpoint: {missing}')
    if unknown:
        problems.append(f'not in the model: {unknown}')
    if problems:
        raise CheckpointFormatError(
            f'{path} ({fmt} layout) does not fit this PoolFormer (check '
            f'arch): ' + ' | '.join(problems))
    for k in unused:
        state.pop(k)
    model.load_state_dict(state, strict=False)
    print_log(
        f'Loaded PoolFormer weights from {path} ({fmt} layout): '
        f'{len(state)} tensors; dropped {len(dropped) + len(unused)} '
        f'unused keys {_brief(dropped + unused)}; freshly initialised: '
        f'{_brief(new_norms)}', logger=logger)


def _brief(keys: List[str], n: int = 6) -> str:
    keys = sorted(keys)
    more = f' ... (+{len(keys) - n})' if len(keys) > n else ''
    return '[' + ', '.join(keys[:n]) + more + ']'
