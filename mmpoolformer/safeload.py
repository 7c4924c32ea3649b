"""Reading ``torch.save`` files without running anything they contain, the
same on every torch this package supports.

Why not ``torch.load(..., weights_only=True)``: its safety depends on the
torch installed. Up to torch 2.5.1 it hands a TorchScript archive to
``torch.jit.load``, which runs the archive's code (CVE-2025-32434,
GHSA-53q9-r3pm-6pq6); before 2.10 its unpickler applies ``SETITEM(S)`` to
objects that are not dicts and trusts a storage's declared size over the
bytes in the archive, which corrupts memory (CVE-2026-24747); before 2.4 it
cannot be told about the numpy and mmengine objects in mmengine's own
checkpoints. torch 2.0 and 2.1 are what mmcv 2.1.0 is built for, so this
module reads the archive itself:

* only the zip archive that ``torch.save`` writes (torch >= 1.6); TorchScript
  archives (``constants.pkl``, ``code/``), torch's legacy formats and
  anything else are refused before any of it is parsed;
* the pickle is interpreted here, opcode by opcode (``pickletools.genops``
  decodes them), by a stack machine that knows only the opcodes of plain
  data. Globals come from :data:`ALLOWED`, a table of objects; no module is
  ever imported by name. ``SETITEM(S)`` apply to dicts only, ``APPEND(S)``
  to lists, ``ADDITEMS`` to sets, ``BUILD`` to the few types listed in
  :func:`_build`;
* every storage's record must hold exactly the bytes its declared element
  count needs, and every tensor's size, stride and offset must stay inside
  its storage.

The result is what ``torch.load`` returns for such files. ``map_location``
takes what ``torch.load`` takes: None (the saved device), a device, a
``{saved: target}`` dict, or a callable ``(storage, location) -> storage``.
"""
import _codecs
import argparse
import collections
import io
import math
import os
import pickle
import pickletools
import re
import zipfile
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


class RefusedCheckpoint(pickle.UnpicklingError):
    """A file this module will not read: it is not plain tensors and data,
    or its metadata does not fit its contents."""


_STORAGE_DTYPES = {
    'DoubleStorage': torch.float64, 'FloatStorage': torch.float32,
    'HalfStorage': torch.float16, 'BFloat16Storage': torch.bfloat16,
    'LongStorage': torch.int64, 'IntStorage': torch.int32,
    'ShortStorage': torch.int16, 'CharStorage': torch.int8,
    'ByteStorage': torch.uint8, 'BoolStorage': torch.bool,
    'ComplexFloatStorage': torch.complex64,
    'ComplexDoubleStorage': torch.complex128,
    'UntypedStorage': torch.uint8,
}


class _StorageType:
    """What a ``torch.FloatStorage``-like global stands for: a dtype."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


# --- tensor rebuilding: torch's reducers' signatures, with checks ----------

def _ints(value, what: str) -> Tuple[int, ...]:
    if not (isinstance(value, tuple)
            and all(type(v) is int for v in value)):
        raise RefusedCheckpoint(f'tensor {what} must be a tuple of ints, '
                                f'got {value!r}')
    return value


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False,
                    hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise RefusedCheckpoint(f'a tensor needs a storage, got '
                                f'{type(storage).__name__}')
    size, stride = _ints(size, 'size'), _ints(stride, 'stride')
    if type(offset) is not int or offset < 0 or len(size) != len(stride) \
            or any(v < 0 for v in size + stride):
        raise RefusedCheckpoint(
            f'tensor size {size}, stride {stride}, offset {offset!r}: '
            f'expected non-negative ints, as many strides as sizes')
    numel = math.prod(size)
    end = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if numel and end > storage.numel:
        raise RefusedCheckpoint(
            f'tensor size {size}, stride {stride}, offset {offset} reaches '
            f'element {end - 1} of a storage of {storage.numel}')
    if hooks:
        raise RefusedCheckpoint('tensors with backward hooks are refused')
    t = torch.empty((0, ), dtype=storage.dtype, device=storage.data.device)
    t.set_(storage.data, offset, size, stride)
    t.requires_grad_(bool(requires_grad))
    return t


def _rebuild_parameter(data, requires_grad, hooks, state=None):
    if not isinstance(data, torch.Tensor) or hooks or state:
        raise RefusedCheckpoint('a Parameter must wrap a plain tensor, with '
                                'no hooks or state')
    return torch.nn.Parameter(data, bool(requires_grad))


def _rebuild_from_type(func, new_type, args, state):
    if func is not _rebuild_tensor or new_type not in (
            torch.Tensor, torch.nn.Parameter) or state:
        raise RefusedCheckpoint(f'tensor subclass {new_type!r} (or state) '
                                f'refused')
    t = _rebuild_tensor(*args)
    return t if new_type is torch.Tensor else torch.nn.Parameter(t)


def _encode(text, encoding='latin1'):
    if not isinstance(text, str) or encoding != 'latin1':
        raise RefusedCheckpoint(f'_codecs.encode({text!r}, {encoding!r}) '
                                f'refused')
    return _codecs.encode(text, encoding)


def _np_dtype(spec, align=False, copy=True):
    """``numpy.dtype`` for plain scalar types only (no objects, records or
    sub-arrays), as numpy pickles a dtype."""
    if not (isinstance(spec, str) and re.fullmatch(r'[<>=|]?[biufcSUMm]\d*',
                                                    spec)):
        raise RefusedCheckpoint(f'numpy dtype {spec!r} refused: plain '
                                f'numbers, strings and dates only')
    return np.dtype(spec, align, copy)


def _numpy_items():
    # numpy 2's numpy._core; numpy 1.26 has a numpy._core without it
    multiarray = getattr(getattr(np, '_core', None), 'multiarray', None) \
        or np.core.multiarray
    items = {}
    # files written under numpy 1 name numpy.core, under numpy 2
    # numpy._core: both resolve to the installed numpy's objects
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        items[mod, '_reconstruct'] = multiarray._reconstruct
        items[mod, 'scalar'] = multiarray.scalar
    items['numpy', 'ndarray'] = np.ndarray
    items['numpy', 'dtype'] = _np_dtype
    for name in dir(np.dtypes) if hasattr(np, 'dtypes') else ():
        obj = getattr(np.dtypes, name)
        if isinstance(obj, type) and issubclass(obj, np.dtype):
            items['numpy.dtypes', name] = obj
    return items


# mmengine's message hub pickles HistoryBuffer, whose statistics methods it
# registers on the class and which pickle as builtins.getattr(HistoryBuffer,
# 'mean'). The real getattr would reach any attribute of any allowed object.
_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_getattr(obj, name):
    """A ``getattr`` that only returns HistoryBuffer's statistics methods."""
    if obj is HistoryBuffer and name in _STATISTICS:
        return getattr(HistoryBuffer, name)
    raise RefusedCheckpoint(
        f'getattr({obj!r}, {name!r}) refused; only '
        f'HistoryBuffer.{{{", ".join(_STATISTICS)}}} are allowed')


def _allowed() -> Dict[Tuple[str, str], Any]:
    items = {
        ('mmengine.logging.history_buffer', 'HistoryBuffer'): HistoryBuffer,
        ('builtins', 'getattr'): history_buffer_getattr,
        ('collections', 'OrderedDict'): collections.OrderedDict,
        # MultiStepLR's milestones (mmdet's schedule_1x): a dict subclass
        # built from a dict of plain data; it calls nothing of the file's
        ('collections', 'Counter'): collections.Counter,
        ('builtins', 'set'): set, ('builtins', 'frozenset'): frozenset,
        ('builtins', 'complex'): complex,
        ('builtins', 'bytearray'): bytearray,
        ('_codecs', 'encode'): _encode,
        ('argparse', 'Namespace'): argparse.Namespace,  # timm's saved args
        ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
        ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
        ('torch._utils', '_rebuild_parameter_with_state'):
        _rebuild_parameter,
        ('torch._tensor', '_rebuild_from_type_v2'): _rebuild_from_type,
        ('torch', 'Size'): torch.Size,
        ('torch', 'device'): torch.device,
    }
    items.update(_numpy_items())
    for name, dtype in _STORAGE_DTYPES.items():
        items['torch', name] = _StorageType(dtype)
    for name in dir(torch):
        if isinstance(getattr(torch, name), torch.dtype):
            items['torch', name] = getattr(torch, name)
    return items


#: (module, name) -> the object a global of a checkpoint may name.
ALLOWED = _allowed()
#: What ``REDUCE`` may call (the others are values: classes, dtypes).
CALLABLE = {
    collections.OrderedDict, collections.Counter, set, frozenset, complex, bytearray, _encode,
    _rebuild_tensor, _rebuild_parameter, _rebuild_from_type, torch.Size,
    torch.device, _np_dtype, history_buffer_getattr,
    *(ALLOWED[m, f] for m, f in ALLOWED if f in ('_reconstruct', 'scalar'))
}
#: Classes that ``NEWOBJ`` may instantiate (``cls.__new__(cls)``), and
#: whose attributes ``BUILD`` may set.
NEWOBJ_CLASSES = {argparse.Namespace, collections.OrderedDict,
                  HistoryBuffer}


# --- the archive ------------------------------------------------------------

class _Storage:
    """One storage of the archive: its bytes as an untyped storage."""

    def __init__(self, data: torch.UntypedStorage, dtype: torch.dtype,
                 numel: int):
        self.data, self.dtype, self.numel = data, dtype, numel


def _restorer(map_location) -> Callable:
    if callable(map_location):
        def restore(storage, location):
            moved = map_location(storage, location)
            return storage if moved is None else moved
        return restore

    def restore(storage, location):
        if isinstance(map_location, dict):
            target = map_location.get(location, location)
        else:
            target = location if map_location is None else map_location
        target = torch.device(target)
        if target.type == 'cpu':
            return storage
        flat = torch.empty((0, ), dtype=torch.uint8).set_(storage)
        return flat.to(target).untyped_storage()
    return restore


class _Archive:
    """The records of a ``torch.save`` zip archive."""

    def __init__(self, zf: zipfile.ZipFile, name: str, map_location):
        self.zf, self.name = zf, name
        names = zf.namelist()
        pkls = [n for n in names if n.endswith('/data.pkl')
                and n.count('/') == 1]
        if any(n.endswith('/constants.pkl') or '/code/' in n
               for n in names):
            raise RefusedCheckpoint(
                f'{name} is a TorchScript archive: it holds code, which is '
                f'never run; only torch.save files of tensors and data are '
                f'read')
        if len(pkls) != 1:
            raise RefusedCheckpoint(
                f'{name} is a zip file but not a torch.save archive (no '
                f'single <folder>/data.pkl)')
        self.prefix = pkls[0][:-len('data.pkl')]
        order = self.prefix + 'byteorder'
        if order in names and zf.read(order).strip() != b'little':
            raise RefusedCheckpoint(f'{name}: big-endian archives are not '
                                    f'read')
        self.restore = _restorer(map_location)
        self.storages: Dict[str, _Storage] = {}

    def storage(self, pid) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5
                and pid[0] == 'storage' and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str) and isinstance(pid[3], str)
                and type(pid[4]) is int and pid[4] >= 0):
            raise RefusedCheckpoint(f'{self.name}: unknown persistent id '
                                    f'{pid!r}')
        _, kind, key, location, numel = pid
        if key in self.storages:
            return self.storages[key]
        record = f'{self.prefix}data/{key}'
        try:
            info = self.zf.getinfo(record)
        except KeyError:
            raise RefusedCheckpoint(f'{self.name}: no record {record}')
        itemsize = torch.empty((), dtype=kind.dtype).element_size()
        if info.file_size != numel * itemsize:
            raise RefusedCheckpoint(
                f'{self.name}: storage {key} declares {numel} elements of '
                f'{kind.dtype} ({numel * itemsize} bytes) but its record '
                f'holds {info.file_size} bytes')
        buf = bytearray(info.file_size)
        with self.zf.open(info) as f:
            if f.readinto(buf) != len(buf):
                raise RefusedCheckpoint(f'{self.name}: record {record} is '
                                        f'truncated')
        data = torch.frombuffer(buf, dtype=torch.uint8) if buf else \
            torch.empty((0, ), dtype=torch.uint8)
        data = self.restore(data.untyped_storage(), location)
        self.storages[key] = _Storage(data, kind.dtype, numel)
        return self.storages[key]


# --- the pickle machine -----------------------------------------------------

_PUSH_ARG = {
    'BININT', 'BININT1', 'BININT2', 'LONG1', 'LONG4', 'BINFLOAT', 'FLOAT',
    'BINUNICODE', 'SHORT_BINUNICODE', 'BINUNICODE8', 'UNICODE',
    'BINBYTES', 'SHORT_BINBYTES', 'BINBYTES8', 'SHORT_BINSTRING',
    'BINSTRING', 'STRING', 'LONG'
}
_CONSTANTS = {'NONE': None, 'NEWTRUE': True, 'NEWFALSE': False}
_IGNORED = {'PROTO', 'FRAME'}


def _build(obj, state):
    """``BUILD``: numpy's own ``__setstate__`` for plain arrays and dtypes;
    attributes (not dunders) for :data:`NEWOBJ_CLASSES`."""
    if isinstance(obj, np.dtype):
        # plain dtypes only: no sub-array, field names or fields
        if not (isinstance(state, tuple) and len(state) >= 5
                and state[2:5] == (None, None, None)):
            raise RefusedCheckpoint(f'numpy dtype state {state!r} refused')
        obj.__setstate__(state)
    elif isinstance(obj, np.ndarray):
        if not (isinstance(state, tuple) and len(state) == 5
                and isinstance(state[2], np.dtype)
                and not state[2].hasobject
                and isinstance(state[4], (bytes, bytearray))):
            raise RefusedCheckpoint('numpy array state refused: plain '
                                    'dtypes and raw bytes only')
        obj.__setstate__(state)
    elif type(obj) in NEWOBJ_CLASSES and isinstance(state, dict) \
            and all(isinstance(k, str) and not k.startswith('__')
                    for k in state):
        if type(obj) is HistoryBuffer:
            # its __setstate__ registers these on the class
            methods = state.get('statistics_methods', {})
            if not (isinstance(methods, dict) and all(
                    getattr(HistoryBuffer, k, None) is v
                    for k, v in methods.items())):
                raise RefusedCheckpoint(
                    f'HistoryBuffer statistics {methods!r} refused')
            obj.__setstate__(state)
            return
        for k, v in state.items():
            setattr(obj, k, v)
    else:
        raise RefusedCheckpoint(f'BUILD on {type(obj).__name__} refused')


def _hashable(obj) -> bool:
    try:
        hash(obj)
    except TypeError:
        return False
    return True


def _unpickle(data: bytes, persistent: Callable) -> Any:
    stack: List[Any] = []
    marks: List[int] = []
    memo: Dict[int, Any] = {}

    def pop_mark() -> List[Any]:
        if not marks:
            raise RefusedCheckpoint('pickle: MARK expected')
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def target(kind, what):
        if not stack or not isinstance(stack[-1], kind):
            got = type(stack[-1]).__name__ if stack else 'nothing'
            raise RefusedCheckpoint(f'pickle: {what} on {got} refused')
        return stack[-1]

    for op, arg, pos in pickletools.genops(data):
        name = op.name
        if name in _PUSH_ARG:
            stack.append(arg)
        elif name in _CONSTANTS:
            stack.append(_CONSTANTS[name])
        elif name in _IGNORED:
            pass
        elif name == 'MARK':
            marks.append(len(stack))
        elif name == 'STOP':
            if len(stack) != 1 or marks:
                raise RefusedCheckpoint('pickle: malformed at STOP')
            return stack[0]
        elif name == 'POP':
            stack.pop()
        elif name == 'POP_MARK':
            pop_mark()
        elif name == 'DUP':
            stack.append(stack[-1])
        elif name in ('BINPUT', 'LONG_BINPUT', 'PUT'):
            memo[int(arg)] = stack[-1]
        elif name == 'MEMOIZE':
            memo[len(memo)] = stack[-1]
        elif name in ('BINGET', 'LONG_BINGET', 'GET'):
            if int(arg) not in memo:
                raise RefusedCheckpoint(f'pickle: memo {arg} unset')
            stack.append(memo[int(arg)])
        elif name == 'EMPTY_DICT':
            stack.append({})
        elif name == 'EMPTY_LIST':
            stack.append([])
        elif name == 'EMPTY_TUPLE':
            stack.append(())
        elif name == 'EMPTY_SET':
            stack.append(set())
        elif name in ('TUPLE1', 'TUPLE2', 'TUPLE3'):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == 'TUPLE':
            stack.append(tuple(pop_mark()))
        elif name == 'LIST':
            stack.append(pop_mark())
        elif name == 'DICT':
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2])))
        elif name == 'FROZENSET':
            stack.append(frozenset(pop_mark()))
        elif name == 'APPEND':
            value = stack.pop()
            target(list, 'APPEND').append(value)
        elif name == 'APPENDS':
            items = pop_mark()
            target(list, 'APPENDS').extend(items)
        elif name == 'ADDITEMS':
            items = pop_mark()
            target(set, 'ADDITEMS').update(items)
        elif name == 'SETITEM':
            key, value = stack[-2:]
            del stack[-2:]
            target(dict, 'SETITEM')[key] = value
        elif name == 'SETITEMS':
            items = pop_mark()
            d = target(dict, 'SETITEMS')
            for key, value in zip(items[::2], items[1::2]):
                d[key] = value
        elif name in ('GLOBAL', 'STACK_GLOBAL'):
            if name == 'GLOBAL':
                module, _, attr = arg.partition(' ')
            else:
                module, attr = stack[-2:]
                del stack[-2:]
            # protocol 2 writes Python 2's name for builtins
            module = 'builtins' if module == '__builtin__' else module
            if (module, attr) not in ALLOWED:
                raise RefusedCheckpoint(
                    f'the file names {module}.{attr}, which is neither a '
                    f'tensor nor plain data')
            stack.append(ALLOWED[module, attr])
        elif name == 'REDUCE':
            args = stack.pop()
            func = stack.pop()
            if not (_hashable(func) and func in CALLABLE
                    and isinstance(args, tuple)):
                raise RefusedCheckpoint(f'pickle: cannot call {func!r}')
            try:
                stack.append(func(*args))
            except RefusedCheckpoint:
                raise
            except Exception as e:  # noqa: BLE001 - named, not run further
                raise RefusedCheckpoint(
                    f'{getattr(func, "__name__", func)}{args!r:.200}: '
                    f'{type(e).__name__}: {e}') from e
        elif name == 'NEWOBJ':
            args = stack.pop()
            cls = stack.pop()
            if cls not in NEWOBJ_CLASSES or not isinstance(args, tuple):
                raise RefusedCheckpoint(f'pickle: cannot create {cls!r}')
            stack.append(cls.__new__(cls, *args))
        elif name == 'BUILD':
            state = stack.pop()
            _build(stack[-1], state)
        elif name in ('BINPERSID', 'PERSID'):
            stack.append(persistent(stack.pop() if name == 'BINPERSID'
                                    else arg))
        else:
            raise RefusedCheckpoint(f'pickle opcode {name} refused')
    raise RefusedCheckpoint('pickle: no STOP')


def _open(path):
    if isinstance(path, (str, os.PathLike)) and not os.path.isfile(path):
        raise FileNotFoundError(f'{path} can not be found.')
    name = path if isinstance(path, (str, os.PathLike)) else \
        getattr(path, 'name', '<file object>')
    if not zipfile.is_zipfile(path):
        raise RefusedCheckpoint(
            f'{name} is not a whole torch.save zip archive (torch >= 1.6): '
            f'torch\'s legacy formats and plain pickles are not read, '
            f'since only torch\'s full unpickler reads them. Re-save it '
            f'with torch.save where you trust the file')
    if isinstance(path, io.IOBase):
        path.seek(0)
    return zipfile.ZipFile(path), str(name)


def check(path) -> None:
    """Raise unless ``path`` is a whole archive that :func:`load` would
    open: a file cut short loses the zip directory at its end. Reads only
    the directory and the pickle (whose checksum zipfile verifies)."""
    zf, name = _open(path)
    with zf:
        zf.read(_Archive(zf, name, 'cpu').prefix + 'data.pkl')


def load(path, map_location=None) -> Any:
    """``torch.load`` for a ``torch.save`` zip archive at ``path`` (a file
    name or binary file object), reading only tensors and plain data.

    Raises:
        RefusedCheckpoint (a ``pickle.UnpicklingError``) naming what was
        refused; FileNotFoundError if ``path`` is not a file.
    """
    zf, name = _open(path)
    with zf:
        archive = _Archive(zf, name, map_location)
        try:
            return _unpickle(zf.read(archive.prefix + 'data.pkl'),
                             archive.storage)
        except RefusedCheckpoint as e:
            raise RefusedCheckpoint(f'Refused {name}: {e}') from None
        except (IndexError, ValueError, KeyError, TypeError) as e:
            raise RefusedCheckpoint(f'Refused {name}: malformed pickle '
                                    f'({type(e).__name__}: {e})') from e
