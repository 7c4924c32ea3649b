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
module reads the files itself:

* the zip archive that ``torch.save`` writes (torch >= 1.6), and torch's
  legacy stream (``_use_new_zipfile_serialization=False``, which the
  OpenMMLab ``publish_model.py`` tools write). TorchScript archives
  (``constants.pkl``, ``code/``), the pre-1.0 tar format and plain pickles
  are refused before any of them is interpreted;
* every pickle (the legacy stream's header pickles too) is interpreted here,
  opcode by opcode (``pickletools.genops`` decodes them), by a stack
  machine that knows only the opcodes of plain data. Globals come from
  :data:`ALLOWED`, a table of objects; no module is ever imported by name.
  ``SETITEM(S)`` apply to dicts only, ``APPEND(S)`` to lists, ``ADDITEMS``
  to sets, ``BUILD`` to the few types listed in :func:`_build`. An object
  is changed (filled, ``BUILD``) only before anything holds it, and built
  at most once; what the callables copy is bounded by the pickle's size,
  and containers nest at most :data:`MAX_DEPTH` deep;
* every storage must be backed by exactly the bytes its declared element
  count needs, all storages together by no more bytes than the file holds,
  and every tensor's size, stride and offset must stay inside its storage.

The result is what ``torch.load`` returns for such files. ``map_location``
takes what ``torch.load`` takes: None (the saved device), a device, a
``{saved: target}`` dict, or a callable ``(storage, location) -> storage``.
Any file that cannot be read, cut short or corrupt included, raises
:class:`RefusedCheckpoint` naming the file and what is wrong.
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
import struct
import zipfile
import zlib
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler


class RefusedCheckpoint(pickle.UnpicklingError):
    """A file this module will not read: it is not plain tensors and data,
    or its metadata does not fit its contents, or it is cut or corrupt."""


#: How deep containers may nest. Python hashes a nested tuple recursively
#: in C without a depth check, so a deep enough one crashes the process
#: when it is used as a dict key; real checkpoints nest a few levels.
MAX_DEPTH = 100
#: How many elements a tensor may show beyond its storage's (an expanded
#: view: stride 0 repeats elements). Such a view allocates nothing, but
#: whoever copies it does; this bounds that to 16 Mi elements.
MAX_REPEATED = 1 << 24

#: What a user does with a file they trust that this module refuses.
TRUSTED = ('If you trust the file, load it once with torch.load(path, '
           'weights_only=False) and save what it returns with torch.save, '
           'which writes the zip archive read here')

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
    """What a ``torch.FloatStorage``-like global stands for: a dtype. Not
    callable; only a persistent id uses it."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _Storage:
    """One storage of the file: ``numel`` elements of ``dtype`` from
    element ``start`` of ``data`` (an untyped storage)."""

    def __init__(self, data: torch.UntypedStorage, dtype: torch.dtype,
                 numel: int, start: int = 0):
        self.data, self.dtype, self.numel = data, dtype, numel
        self.start = start


class _CallerError(Exception):
    """An error of the caller's ``map_location``, re-raised as it is."""


# --- the callables: torch's reducers' signatures, with checks ---------------
# Each is a plain function of its arguments' values: none imports, looks up
# attributes by name, or calls anything it is given.

def _ints(value, what: str) -> Tuple[int, ...]:
    if not (isinstance(value, tuple)
            and all(type(v) is int for v in value)):
        raise RefusedCheckpoint(f'tensor {what} must be a tuple of ints, '
                                f'got {value!r:.200}')
    return value


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False,
                    hooks=None, metadata=None):
    """A view of ``storage``: allocates nothing; reaches only the
    storage's elements, and shows at most :data:`MAX_REPEATED` elements
    more than it has."""
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
    if numel > max(storage.numel, MAX_REPEATED):
        raise RefusedCheckpoint(
            f'tensor size {size}, stride {stride} shows {numel} elements '
            f'of a storage of {storage.numel}; repeated elements are read '
            f'up to {MAX_REPEATED}')
    if hooks:
        raise RefusedCheckpoint('tensors with backward hooks are refused')
    if metadata:
        # the conj/neg bits (torch._utils.get_tensor_metadata)
        raise RefusedCheckpoint(f'tensor metadata {metadata!r:.200} '
                                f'refused: plain tensors only')
    t = torch.empty((0, ), dtype=storage.dtype, device=storage.data.device)
    t.set_(storage.data, storage.start + offset, size, stride)
    t.requires_grad_(bool(requires_grad))
    return t


def _rebuild_parameter(data, requires_grad, hooks, state=None):
    """Wraps a tensor made here; no hooks, no state."""
    if type(data) is not torch.Tensor or hooks or state:
        raise RefusedCheckpoint('a Parameter must wrap a plain tensor, with '
                                'no hooks or state')
    return torch.nn.Parameter(data, bool(requires_grad))


def _rebuild_from_type(func, new_type, args, state):
    """Only a plain tensor or a Parameter, by :func:`_rebuild_tensor`."""
    if func is not _rebuild_tensor or new_type not in (
            torch.Tensor, torch.nn.Parameter) or state \
            or not isinstance(args, tuple):
        raise RefusedCheckpoint(f'tensor subclass {new_type!r:.200} (or '
                                f'state) refused')
    t = _rebuild_tensor(*args)
    return t if new_type is torch.Tensor else torch.nn.Parameter(t)


def _encode(text, encoding='latin1'):
    """How protocol 2 pickles bytes: a str, one byte per character."""
    if type(text) is not str or encoding != 'latin1':
        raise RefusedCheckpoint(f'_codecs.encode({text!r:.200}, '
                                f'{encoding!r:.50}) refused')
    return _codecs.encode(text, encoding)


_PLAIN_DTYPE = re.compile(r'[<>=|]?[biufcSU]\d*')


def _plain(dtype) -> bool:
    """A numpy dtype of numbers or strings: no objects (pointers), fields,
    sub-arrays or dates, and at least one byte per item."""
    return isinstance(dtype, np.dtype) and dtype.kind in 'biufcSU' \
        and not dtype.hasobject and dtype.fields is None \
        and dtype.subdtype is None and dtype.itemsize > 0


def _np_dtype(spec, align=False, copy=True):
    """``numpy.dtype`` for plain scalar types only, as numpy pickles a
    dtype: always a fresh copy (``copy=False`` would hand out numpy's own
    shared descriptor, which a later ``BUILD`` would change for the whole
    process)."""
    if not (type(spec) is str and _PLAIN_DTYPE.fullmatch(spec)
            and align is False and copy is True):
        raise RefusedCheckpoint(
            f'numpy dtype({spec!r:.50}, {align!r:.20}, {copy!r:.20}) '
            f'refused: plain numbers and strings only')
    dtype = np.dtype(spec, False, True)
    if not _plain(dtype):
        raise RefusedCheckpoint(f'numpy dtype {spec!r} refused: plain '
                                f'numbers and strings only')
    return dtype


def _multiarray():
    # numpy 2's numpy._core; numpy 1.26 has a numpy._core without it
    return getattr(getattr(np, '_core', None), 'multiarray', None) \
        or np.core.multiarray


def _np_reconstruct(cls, shape, code):
    """An empty array for ``BUILD`` to fill, as ``ndarray.__reduce__``
    writes it; nothing else."""
    if not (cls is np.ndarray and shape == (0, ) and code == b'b'):
        raise RefusedCheckpoint(f'numpy _reconstruct{(cls, shape, code)!r:.200} '
                                f'refused')
    return _multiarray()._reconstruct(np.ndarray, (0, ), b'b')


def _np_scalar(dtype, data):
    """A numpy scalar from exactly its bytes (numpy reads ``itemsize``
    bytes from ``data`` and would read past a shorter one's end)."""
    if not (_plain(dtype) and isinstance(data, bytes)
            and len(data) == dtype.itemsize):
        raise RefusedCheckpoint(
            f'numpy scalar of {dtype!r:.50} from {len(data) if isinstance(data, bytes) else type(data).__name__} '
            f'bytes refused: plain dtypes and exactly their bytes only')
    return _multiarray().scalar(dtype, data)


def _bytearray(data, encoding=None):
    """``bytearray`` of bytes (protocol 3 on) or of a latin-1 str
    (protocol 2), never of an int: ``bytearray(n)`` would allocate n
    bytes from a few in the file."""
    if isinstance(data, bytes) and encoding is None:
        return bytearray(data)
    if type(data) is str and encoding == 'latin-1':
        return bytearray(data, encoding)
    raise RefusedCheckpoint(f'bytearray({type(data).__name__}, '
                            f'{encoding!r:.50}) refused: bytes only')


def _complex(real=0.0, imag=0.0):
    """``complex`` of two numbers (a str argument would be parsed)."""
    if not (type(real) in (int, float) and type(imag) in (int, float)):
        raise RefusedCheckpoint('complex() of numbers only')
    return complex(real, imag)


def _of(kind, what: str):
    """``what`` (a container type) of one plain list/tuple/dict argument
    only: iterating anything else (a tensor, a str) could call code or
    repeat a small object many times."""
    def make(items=()):
        if type(items) not in kind:
            raise RefusedCheckpoint(f'{what} of {type(items).__name__} '
                                    f'refused')
        return CONSTRUCT[what](items)
    make.__name__ = what
    return make


CONSTRUCT = {'set': set, 'frozenset': frozenset,
             'OrderedDict': collections.OrderedDict,
             'Counter': collections.Counter}


def _size(sizes=()):
    if type(sizes) is not tuple or any(type(v) is not int for v in sizes):
        raise RefusedCheckpoint('torch.Size of a tuple of ints only')
    return torch.Size(sizes)


def _device(kind, index=None):
    if type(kind) is not str or not (index is None or type(index) is int):
        raise RefusedCheckpoint('torch.device(str[, int]) only')
    return torch.device(kind) if index is None else torch.device(kind, index)


def _numpy_items():
    items = {}
    # files written under numpy 1 name numpy.core, under numpy 2
    # numpy._core: both resolve to the installed numpy's objects
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        items[mod, '_reconstruct'] = _np_reconstruct
        items[mod, 'scalar'] = _np_scalar
    # a value: _np_reconstruct compares it, nothing calls it
    items['numpy', 'ndarray'] = np.ndarray
    items['numpy', 'dtype'] = _np_dtype
    # values (a pickled dtype class): nothing here calls or builds them
    for name in dir(np.dtypes) if hasattr(np, 'dtypes') else ():
        obj = getattr(np.dtypes, name)
        if isinstance(obj, type) and issubclass(obj, np.dtype):
            items['numpy.dtypes', name] = obj
    return items


# Methods that pickle (protocol 2) as builtins.getattr(cls, name): mmengine's
# message hub's HistoryBuffer registers its statistics methods on the class;
# OneCycleLR/OneCycleMomentum keep their annealing function (a staticmethod
# of plain arithmetic) in their state. The real getattr would reach any
# attribute of any allowed object.
_STATISTICS = ('min', 'max', 'current', 'mean')
_METHODS = {HistoryBuffer: _STATISTICS,
            OneCycleParamScheduler: ('_annealing_cos', '_annealing_linear')}


def allowed_getattr(obj, name):
    """A ``getattr`` that only returns the methods in :data:`_METHODS`, as
    values: ``REDUCE`` never calls them (they are not in
    :data:`CALLABLE`)."""
    if isinstance(obj, type) and obj in _METHODS \
            and name in _METHODS[obj]:
        return getattr(obj, name)
    raise RefusedCheckpoint(
        f'getattr({obj!r:.100}, {name!r:.100}) refused; only ' + ', '.join(
            f'{cls.__name__}.{{{", ".join(names)}}}'
            for cls, names in _METHODS.items()) + ' are allowed')


history_buffer_getattr = allowed_getattr


def _allowed() -> Dict[Tuple[str, str], Any]:
    items = {
        # classes: NEWOBJ makes them empty (no arguments, no __init__),
        # _build sets their plain attributes; see NEWOBJ_CLASSES. The
        # HistoryBuffer class is added with _METHODS below.
        ('argparse', 'Namespace'): argparse.Namespace,  # timm's saved args
        ('builtins', 'getattr'): allowed_getattr,
        # containers of a plain list/dict argument (_of): they copy
        # references to objects already made, call none of them, and their
        # size is charged to the pickle's budget. MultiStepLR's milestones
        # (mmdet's schedule_1x) are a Counter.
        ('collections', 'OrderedDict'): _of((list, tuple), 'OrderedDict'),
        ('collections', 'Counter'): _of((dict, ), 'Counter'),
        ('builtins', 'set'): _of((list, tuple), 'set'),
        ('builtins', 'frozenset'): _of((list, tuple), 'frozenset'),
        # numbers and bytes from numbers, strs and bytes
        ('builtins', 'complex'): _complex,
        ('builtins', 'bytearray'): _bytearray,
        ('_codecs', 'encode'): _encode,
        # views of the file's own storages, checked against them
        ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
        ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
        ('torch._utils', '_rebuild_parameter_with_state'):
        _rebuild_parameter,
        ('torch._tensor', '_rebuild_from_type_v2'): _rebuild_from_type,
        # plain values: a tuple of ints, a device name
        ('torch', 'Size'): _size,
        ('torch', 'device'): _device,
    }
    # values, not called (CALLABLE leaves them out): protocol 2 names
    # these classes for getattr, protocol 4 names the methods directly
    for cls, names in _METHODS.items():
        items[cls.__module__, cls.__name__] = cls
        for name in names:
            items[cls.__module__, f'{cls.__name__}.{name}'] = \
                getattr(cls, name)
    items.update(_numpy_items())
    # values: persistent ids name them, nothing calls them
    for name, dtype in _STORAGE_DTYPES.items():
        items['torch', name] = _StorageType(dtype)
    for name in dir(torch):
        if isinstance(getattr(torch, name), torch.dtype):
            items['torch', name] = getattr(torch, name)
    return items


#: (module, name) -> the object a global of a checkpoint may name.
ALLOWED = _allowed()
#: What ``REDUCE`` may call (the others are values: classes, dtypes). Each
#: checks its arguments' types before it does anything.
CALLABLE = {obj for (module, name), obj in ALLOWED.items()
            if callable(obj) and not isinstance(obj, (type, torch.dtype))
            and '.' not in name}
#: Classes that ``NEWOBJ`` may instantiate (``cls.__new__(cls)``, no
#: arguments), and whose attributes ``BUILD`` may set.
NEWOBJ_CLASSES = {argparse.Namespace, HistoryBuffer}
#: The attributes of a HistoryBuffer (``statistics_methods`` is popped by
#: its ``__setstate__``): a method table of its own would be called by
#: ``HistoryBuffer.statistics``.
_HISTORY_STATE = {'max_length': int, '_log_history': np.ndarray,
                  '_count_history': np.ndarray, 'statistics_methods': dict}


# --- the pickle machine -----------------------------------------------------

_PUSH_ARG = {
    'BININT', 'BININT1', 'BININT2', 'LONG1', 'LONG4', 'BINFLOAT', 'FLOAT',
    'INT', 'BINUNICODE', 'SHORT_BINUNICODE', 'BINUNICODE8', 'UNICODE',
    'BINBYTES', 'SHORT_BINBYTES', 'BINBYTES8', 'SHORT_BINSTRING',
    'BINSTRING', 'STRING', 'LONG'
}
_CONSTANTS = {'NONE': None, 'NEWTRUE': True, 'NEWFALSE': False}
_IGNORED = {'PROTO', 'FRAME'}
# values that hold nothing and cannot change: never tracked
_ATOMS = (int, float, complex, str, bytes, bool, type(None), torch.dtype,
          _StorageType, _Storage, type)


def _restates(dtype: np.dtype, state) -> bool:
    """Whether a dtype's ``BUILD`` state only says what its constructor
    gave: numpy's ``__setstate__`` would take a new itemsize, alignment or
    flags (marking plain bytes as object pointers) from it. Byte order may
    differ: that only swaps bytes."""
    own = dtype.__reduce__()[2]
    return isinstance(state, tuple) and len(state) == len(own) \
        and state[0] == own[0] and state[1] in ('<', '>', '=', '|') \
        and state[2:] == own[2:] \
        and all(type(a) is type(b) for a, b in zip(state[2:], own[2:]))


def _build(obj, state) -> int:
    """``BUILD``, on an object nothing holds yet and only once (the
    machine checks that): numpy's own ``__setstate__`` for plain arrays of
    exactly their bytes and for dtypes restating their constructor;
    attributes (not dunders) for :data:`NEWOBJ_CLASSES`; ``_metadata`` for
    an OrderedDict (``nn.Module.state_dict``). Returns the bytes copied."""
    if isinstance(obj, np.dtype):
        if not _restates(obj, state):
            raise RefusedCheckpoint(
                f'numpy dtype state {state!r:.200} refused: it may only '
                f'restate dtype {obj.str!r} (byte order aside)')
        obj.__setstate__(state)
        return 0
    if type(obj) is np.ndarray:
        if not (isinstance(state, tuple) and len(state) == 5
                and state[0] == 1 and type(state[1]) is tuple
                and all(type(n) is int and n >= 0 for n in state[1])
                and _plain(state[2]) and type(state[3]) is bool
                and isinstance(state[4], (bytes, bytearray))):
            raise RefusedCheckpoint('numpy array state refused: plain '
                                    'dtypes and raw bytes only')
        _, shape, dtype, _, data = state
        if len(data) != dtype.itemsize * math.prod(shape):
            raise RefusedCheckpoint(
                f'numpy array of shape {shape} and dtype {dtype.str} needs '
                f'{dtype.itemsize * math.prod(shape)} bytes, got '
                f'{len(data)}')
        obj.__setstate__(state)
        return len(data)
    if type(obj) is collections.OrderedDict:
        if not (type(state) is dict and set(state) <= {'_metadata'}):
            raise RefusedCheckpoint(f'OrderedDict state {state!r:.200} '
                                    f'refused: _metadata only')
        obj.__dict__.update(state)
        return len(state)
    if type(obj) in NEWOBJ_CLASSES and type(state) is dict \
            and all(type(k) is str and not k.startswith('__')
                    for k in state):
        if type(obj) is HistoryBuffer:
            if not all(k in _HISTORY_STATE
                       and isinstance(v, _HISTORY_STATE[k])
                       for k, v in state.items()):
                raise RefusedCheckpoint(f'HistoryBuffer state '
                                        f'{state!r:.200} refused')
            methods = state.get('statistics_methods', {})
            if not all(getattr(HistoryBuffer, k, None) is v
                       for k, v in methods.items()):
                raise RefusedCheckpoint(
                    f'HistoryBuffer statistics {methods!r:.200} refused')
            # its __setstate__ pops from the dict it is given
            obj.__setstate__(dict(state))
        else:
            for k, v in state.items():
                setattr(obj, k, v)
        return len(state)
    raise RefusedCheckpoint(f'BUILD on {type(obj).__name__} refused')


class _Machine:
    """Interprets one pickle. Every object it makes that can hold or be
    changed is tracked: whether something holds it yet (a container, a
    call's arguments, a ``BUILD`` state, a second reference from the memo),
    whether it was built, and how deep it nests."""

    def __init__(self, persistent: Callable, budget: int):
        self.persistent, self.budget = persistent, budget
        # id -> [obj, depth, held, built]; the object keeps its id unique
        self.seen: Dict[int, list] = {}

    def charge(self, n: int):
        """What calls and BUILDs copy: in a pickle every object is one
        container's, so the copies add up to less than its size; shared
        references (the memo) would repeat them."""
        self.budget -= n
        if self.budget < 0:
            raise RefusedCheckpoint('pickle: its objects copy more than '
                                    'the file holds (shared references '
                                    'copied over and over)')

    def made(self, obj, depth: int = 0):
        if not isinstance(obj, _ATOMS):
            if depth > MAX_DEPTH:
                raise RefusedCheckpoint(f'pickle: containers nested over '
                                        f'{MAX_DEPTH} deep')
            self.seen[id(obj)] = [obj, depth, False, False]
        return obj

    def depth(self, obj) -> int:
        entry = self.seen.get(id(obj))
        return entry[1] if entry else 0

    def hold(self, items) -> int:
        """Mark ``items`` held; return the depth a container of them
        has."""
        depth = 0
        for item in items:
            entry = self.seen.get(id(item))
            if entry:
                entry[2] = True
                depth = max(depth, entry[1])
        if depth + 1 > MAX_DEPTH:
            raise RefusedCheckpoint(f'pickle: containers nested over '
                                    f'{MAX_DEPTH} deep')
        return depth + 1

    def change(self, obj, kind, what: str, items) -> Any:
        """``obj`` about to be filled with ``items``: only a ``kind`` that
        nothing holds yet."""
        if type(obj) not in kind:
            raise RefusedCheckpoint(f'pickle: {what} on '
                                    f'{type(obj).__name__} refused')
        entry = self.seen[id(obj)]
        if entry[2] or entry[3]:
            raise RefusedCheckpoint(f'pickle: {what} on a '
                                    f'{type(obj).__name__} after something '
                                    f'holds it refused')
        entry[1] = max(entry[1], self.hold(items))
        return obj

    def run(self, stream) -> Any:
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

        for op, arg, pos in pickletools.genops(stream):
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
                self.hold(stack[-1:])
                stack.append(stack[-1])
            elif name in ('BINPUT', 'LONG_BINPUT', 'PUT'):
                memo[int(arg)] = stack[-1]
            elif name == 'MEMOIZE':
                memo[len(memo)] = stack[-1]
            elif name in ('BINGET', 'LONG_BINGET', 'GET'):
                if int(arg) not in memo:
                    raise RefusedCheckpoint(f'pickle: memo {arg} unset')
                # a second reference: whatever it is, it is complete now
                self.hold([memo[int(arg)]])
                stack.append(memo[int(arg)])
            elif name == 'EMPTY_DICT':
                stack.append(self.made({}))
            elif name == 'EMPTY_LIST':
                stack.append(self.made([]))
            elif name == 'EMPTY_TUPLE':
                stack.append(())
            elif name == 'EMPTY_SET':
                stack.append(self.made(set()))
            elif name in ('TUPLE1', 'TUPLE2', 'TUPLE3', 'TUPLE', 'LIST',
                          'DICT', 'FROZENSET'):
                if name.startswith('TUPLE') and name != 'TUPLE':
                    n = int(name[-1])
                    if len(stack) < n:
                        raise RefusedCheckpoint(f'pickle: {name} on a '
                                                f'short stack')
                    items = stack[len(stack) - n:]
                    del stack[len(stack) - n:]
                else:
                    items = pop_mark()
                depth = self.hold(items)
                if name == 'LIST':
                    obj = items
                elif name == 'DICT':
                    obj = dict(zip(items[::2], items[1::2]))
                elif name == 'FROZENSET':
                    obj = frozenset(items)
                else:
                    obj = tuple(items)
                stack.append(self.made(obj, depth))
            elif name == 'APPEND':
                value = stack.pop()
                self.change(stack[-1], (list, ), name, [value]).append(value)
            elif name == 'APPENDS':
                items = pop_mark()
                self.change(stack[-1], (list, ), name, items).extend(items)
            elif name == 'ADDITEMS':
                items = pop_mark()
                self.change(stack[-1], (set, ), name, items).update(items)
            elif name in ('SETITEM', 'SETITEMS'):
                if name == 'SETITEM':
                    items = stack[-2:]
                    del stack[-2:]
                else:
                    items = pop_mark()
                d = self.change(stack[-1], (dict, collections.OrderedDict,
                                            collections.Counter), name,
                                items)
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
                if not (type(module) is str and type(attr) is str
                        and (module, attr) in ALLOWED):
                    raise RefusedCheckpoint(
                        f'the file names {module}.{attr}, which is neither '
                        f'a tensor nor plain data')
                stack.append(ALLOWED[module, attr])
            elif name == 'REDUCE':
                args = stack.pop()
                func = stack.pop()
                if not (callable(func) and func in CALLABLE
                        and type(args) is tuple):
                    raise RefusedCheckpoint(f'pickle: cannot call '
                                            f'{func!r:.100}')
                depth = self.hold([args]) + 1
                # what the call copies: its bytes and containers, and a
                # str it converts (not the names beside it: 'latin1')
                self.charge(sum(len(a) for i, a in enumerate(args)
                                if isinstance(a, (bytes, bytearray, tuple,
                                                  list, dict))
                                or (i == 0 and type(a) is str)))
                try:
                    obj = func(*args)
                except (RefusedCheckpoint, _CallerError):
                    raise
                except Exception as e:  # noqa: BLE001 - named, not run
                    raise RefusedCheckpoint(
                        f'{getattr(func, "__name__", func)}{args!r:.200}: '
                        f'{type(e).__name__}: {e}') from e
                stack.append(self.made(obj, depth))
            elif name == 'NEWOBJ':
                args = stack.pop()
                cls = stack.pop()
                if not (isinstance(cls, type) and cls in NEWOBJ_CLASSES
                        and args == ()):
                    raise RefusedCheckpoint(f'pickle: cannot create '
                                            f'{cls!r:.100}')
                stack.append(self.made(cls.__new__(cls)))
            elif name == 'BUILD':
                state = stack.pop()
                obj = stack[-1]
                entry = self.seen.get(id(obj))
                if entry is None or entry[2] or entry[3]:
                    raise RefusedCheckpoint(
                        f'pickle: BUILD on a {type(obj).__name__} that '
                        f'something holds or that was built refused')
                entry[1] = max(entry[1], self.hold([state]))
                self.charge(_build(obj, state))
                entry[3] = True
            elif name in ('BINPERSID', 'PERSID'):
                pid = stack.pop() if name == 'BINPERSID' else arg
                self.hold([pid])
                stack.append(self.persistent(pid))
            else:
                raise RefusedCheckpoint(f'pickle opcode {name} refused')
        raise RefusedCheckpoint('pickle: no STOP')


def _unpickle(stream, persistent: Callable, size: int) -> Any:
    """One pickle from ``stream`` (bytes or a :class:`_Bounded`), whose
    objects may copy at most ``size`` bytes' worth."""
    return _Machine(persistent, size + 4096).run(stream)


def _no_persistent(pid):
    raise RefusedCheckpoint(f'unexpected persistent id {pid!r:.200}')


# --- storages ----------------------------------------------------------------

def _restorer(map_location) -> Callable:
    if callable(map_location):
        def restore(storage, location):
            try:
                moved = map_location(storage, location)
            except Exception as e:  # the caller's own error, as it is
                raise _CallerError(e) from e
            moved = storage if moved is None else moved
            if not (isinstance(moved, torch.UntypedStorage)
                    and moved.nbytes() == storage.nbytes()):
                raise _CallerError(ValueError(
                    f'map_location returned {moved!r:.100} for a storage '
                    f'of {storage.nbytes()} bytes; expected an untyped '
                    f'storage of as many bytes'))
            return moved
        return restore

    def restore(storage, location):
        if isinstance(map_location, dict):
            target = map_location.get(location, location)
            saved = location not in map_location
        else:
            target = location if map_location is None else map_location
            saved = map_location is None
        try:
            target = torch.device(target)
            if target.type == 'cpu':
                return storage
            flat = torch.empty((0, ), dtype=torch.uint8).set_(storage)
            return flat.to(target).untyped_storage()
        except Exception as e:  # noqa: BLE001 - the file's or the caller's
            if saved:  # the file's location, not the caller's
                raise RefusedCheckpoint(
                    f'its storage location {location!r:.50} cannot be used '
                    f'here ({type(e).__name__}: {e}); map_location names '
                    f'another') from e
            raise _CallerError(e) from e
    return restore


class _Storages:
    """The storages a file's persistent ids declare, each made once, all
    together no larger than the file."""

    def __init__(self, name: str, map_location, size: int):
        self.name, self.size = name, size
        self.restore = _restorer(map_location)
        self.made: Dict[str, _Storage] = {}
        self.total = 0

    def declared(self, pid, length: int) -> Tuple[str, torch.dtype, int,
                                                  str, Any]:
        if not (isinstance(pid, tuple) and len(pid) == length
                and pid[0] == 'storage' and isinstance(pid[1], _StorageType)
                and type(pid[2]) is str and type(pid[3]) is str
                and type(pid[4]) is int and pid[4] >= 0):
            raise RefusedCheckpoint(f'unknown persistent id {pid!r:.200}')
        _, kind, key, location, numel = pid[:5]
        if key in self.made:
            seen = self.made[key]
            if (seen.dtype, seen.numel) != (kind.dtype, numel):
                raise RefusedCheckpoint(
                    f'storage {key} declared as {numel} {kind.dtype} and '
                    f'as {seen.numel} {seen.dtype}')
        return key, kind.dtype, numel, location, pid[5:]

    def reserve(self, key: str, nbytes: int):
        self.total += nbytes
        if self.total > self.size:
            raise RefusedCheckpoint(
                f'its storages declare {self.total} bytes or more, but the '
                f'file holds {self.size}')


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


class _Archive(_Storages):
    """The records of a ``torch.save`` zip archive."""

    def __init__(self, zf: zipfile.ZipFile, name: str, map_location,
                 size: int):
        super().__init__(name, map_location, size)
        self.zf = zf
        names = zf.namelist()
        pkls = [n for n in names if n.endswith('/data.pkl')
                and n.count('/') == 1]
        if any(n.endswith('/constants.pkl') or '/code/' in n
               for n in names):
            raise RefusedCheckpoint(
                f'it is a TorchScript archive: it holds code, which is '
                f'never run; only torch.save files of tensors and data are '
                f'read. A TorchScript model is loaded with torch.jit.load '
                f'where you trust it')
        if len(pkls) != 1:
            raise RefusedCheckpoint(
                'it is a zip file but not a torch.save archive (no single '
                '<folder>/data.pkl)')
        self.prefix = pkls[0][:-len('data.pkl')]
        order = self.prefix + 'byteorder'
        if order in names and self.record(order).strip() != b'little':
            raise RefusedCheckpoint('big-endian archives are not read')

    def info(self, record: str) -> zipfile.ZipInfo:
        try:
            info = self.zf.getinfo(record)
        except KeyError:
            raise RefusedCheckpoint(f'no record {record}')
        # torch.save stores records as they are; a compressed one could
        # inflate to far more than the file holds
        if info.compress_type != zipfile.ZIP_STORED \
                or info.compress_size != info.file_size \
                or info.header_offset + info.file_size > self.size:
            raise RefusedCheckpoint(
                f'record {record} is compressed or reaches past the end of '
                f'the file; torch.save stores records as they are')
        return info

    def record(self, record: str) -> bytes:
        info = self.info(record)
        self.reserve(record, info.file_size)
        return self.zf.read(info)

    def pickle(self) -> bytes:
        return self.record(self.prefix + 'data.pkl')

    def storage(self, pid) -> _Storage:
        key, dtype, numel, location, _ = self.declared(pid, 5)
        if key in self.made:
            return self.made[key]
        record = f'{self.prefix}data/{key}'
        info = self.info(record)
        nbytes = numel * _itemsize(dtype)
        if info.file_size != nbytes:
            raise RefusedCheckpoint(
                f'storage {key} declares {numel} elements of {dtype} '
                f'({nbytes} bytes) but its record holds {info.file_size} '
                f'bytes')
        # overlapping records (entries sharing their bytes) add up too
        self.reserve(key, nbytes)
        buf = bytearray(nbytes)
        with self.zf.open(info) as f:
            if f.readinto(buf) != nbytes or f.read(1):
                raise RefusedCheckpoint(f'record {record} is truncated')
        data = torch.frombuffer(buf, dtype=torch.uint8) if buf else \
            torch.empty((0, ), dtype=torch.uint8)
        data = self.restore(data.untyped_storage(), location)
        self.made[key] = _Storage(data, dtype, numel)
        return self.made[key]


# --- torch's legacy stream ---------------------------------------------------

#: The legacy stream's first pickle, and its second.
MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
PROTOCOL_VERSION = 1001


class _Bounded:
    """A file's ``read``/``readline``/``tell`` for ``pickletools``: a read
    asks for at most what is left (a buffered file's ``read(n)`` allocates
    ``n`` bytes first, and a pickle's lengths are the file's to choose)."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size

    def tell(self) -> int:
        return self.f.tell()

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.f.tell()
        return self.f.read(left if n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self.f.readline(self.size - self.f.tell())


class _Legacy(_Storages):
    """torch's legacy stream (``torch.serialization._legacy_save``): the
    magic number, the protocol version and the system info, each a pickle;
    the main pickle, whose persistent ids ``('storage', type, key,
    location, numel, view)`` declare the storages; the sorted list of
    storage keys; then for each key its element count (8 bytes, little
    endian) and its bytes."""

    def __init__(self, f, name: str, map_location, size: int):
        super().__init__(name, map_location, size)
        self.f = _Bounded(f, size)
        self.filled: Dict[str, bool] = {}

    def small(self, what: str):
        try:
            return _unpickle(self.f, _no_persistent, self.size)
        except RefusedCheckpoint as e:
            raise RefusedCheckpoint(f'bad legacy header ({what}): {e}')

    def header(self):
        version = self.small('protocol version')
        if version != PROTOCOL_VERSION:
            raise RefusedCheckpoint(f'legacy protocol version '
                                    f'{version!r:.50}, expected '
                                    f'{PROTOCOL_VERSION}')
        info = self.small('system info')
        if not isinstance(info, dict):
            raise RefusedCheckpoint(f'bad legacy header: system info '
                                    f'{info!r:.100}')
        if info.get('little_endian', True) is not True:
            raise RefusedCheckpoint('big-endian files are not read')

    def storage(self, pid) -> _Storage:
        if isinstance(pid, tuple) and pid[:1] == ('module', ):
            raise RefusedCheckpoint(
                'it pickles whole modules (their classes and code), not '
                'state dicts')
        key, dtype, numel, location, (view, ) = self.declared(pid, 6)
        if key not in self.made:
            nbytes = numel * _itemsize(dtype)
            self.reserve(key, nbytes + 8)
            # filled from the file after the main pickle, as torch does;
            # every storage must be, or the file is refused
            data = torch.empty((nbytes, ), dtype=torch.uint8)
            data = self.restore(data.untyped_storage(), location)
            self.made[key] = _Storage(data, dtype, numel)
        root = self.made[key]
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3
                and type(view[0]) is str and type(view[1]) is int
                and type(view[2]) is int and view[1] >= 0
                and view[2] >= 0 and view[1] + view[2] <= numel):
            raise RefusedCheckpoint(f'storage view {view!r:.100} of '
                                    f'storage {key} ({numel} elements)')
        # torch < 1.0's storage views: a window on the root's elements
        return _Storage(root.data, dtype, view[2], view[1])

    def fill(self):
        keys = self.small('storage keys')
        if not (type(keys) is list and all(type(k) is str for k in keys)
                and len(set(keys)) == len(keys)
                and set(keys) == set(self.made)):
            raise RefusedCheckpoint(
                f'bad record: its storage keys {keys!r:.200} are not the '
                f'{len(self.made)} storages it declares')
        for key in keys:
            s = self.made[key]
            head = self.f.read(8)
            if len(head) != 8:
                raise RefusedCheckpoint(f'storage {key}: file cut short')
            numel, = struct.unpack('<q', head)
            if numel != s.numel:
                raise RefusedCheckpoint(
                    f'bad record: storage {key} declares {s.numel} '
                    f'elements but its record says {numel}')
            nbytes = s.data.nbytes()
            if s.data.device.type == 'cpu':
                target = torch.empty((0, ), dtype=torch.uint8).set_(s.data)
            else:
                target = torch.empty((nbytes, ), dtype=torch.uint8)
            if nbytes and self.f.f.readinto(
                    memoryview(target.numpy()).cast('B')) != nbytes:
                raise RefusedCheckpoint(f'storage {key}: file cut short')
            if s.data.device.type != 'cpu':
                s.data.copy_(target.untyped_storage())
        left = self.size - self.f.tell()
        if left:
            raise RefusedCheckpoint(f'bad record: {left} bytes after its '
                                    f'last storage')

    def load(self):
        self.header()
        result = _unpickle(self.f, self.storage, self.size)
        self.fill()
        return result


# --- files --------------------------------------------------------------------

_ZIP = b'PK\x03\x04'


def _open(path):
    """(binary file, name, size); FileNotFoundError only for a missing
    file."""
    if isinstance(path, (str, os.PathLike)):
        if not os.path.isfile(path):
            raise FileNotFoundError(f'{path} can not be found.')
        f, name = open(path, 'rb'), str(path)
    else:
        f, name = path, str(getattr(path, 'name', '<file object>'))
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    return f, name, size


def _kind(f, size: int) -> str:
    """'zip' or 'legacy', or a refusal saying what the file is."""
    head = f.read(512)
    f.seek(0)
    if head.startswith(_ZIP) or zipfile.is_zipfile(f):
        f.seek(0)
        if not zipfile.is_zipfile(f):
            raise RefusedCheckpoint(
                'it is not a whole torch.save zip archive: the zip is cut '
                'short or corrupt (its directory at the end is missing)')
        return 'zip'
    f.seek(0)
    if head[257:262] == b'ustar':
        raise RefusedCheckpoint(
            f'it is in torch\'s pre-1.0 tar format, which only torch\'s '
            f'full unpickler reads. {TRUSTED}')
    try:
        magic = _unpickle(_Bounded(f, size), _no_persistent, size)
    except (RefusedCheckpoint, ValueError, IndexError, TypeError,
            KeyError, UnicodeDecodeError, EOFError) as e:
        magic = e
    if magic != MAGIC_NUMBER or type(magic) is not int:
        raise RefusedCheckpoint(
            f'it is neither a torch.save zip archive nor torch\'s legacy '
            f'format (a plain pickle or another file), which only a full '
            f'unpickler reads. {TRUSTED}')
    return 'legacy'


# What reading a cut or corrupt file can raise, beyond our own refusals
_CORRUPT = (zipfile.BadZipFile, zlib.error, OSError, EOFError,
            NotImplementedError, UnicodeDecodeError, ValueError, KeyError,
            IndexError, TypeError, struct.error, RuntimeError,
            OverflowError)


def _read(path, map_location, whole: bool):
    f, name, size = _open(path)
    try:
        kind = _kind(f, size)
        if kind == 'legacy':
            # no index to check against: reading it is the check
            return _Legacy(f, name, map_location, size).load()
        with zipfile.ZipFile(f) as zf:
            archive = _Archive(zf, name, map_location, size)
            data = archive.pickle()
            if whole:
                return _unpickle(data, archive.storage, len(data))
    except RefusedCheckpoint as e:
        raise RefusedCheckpoint(f'Refused {name}: {e}') from None
    except _CallerError as e:
        raise e.__cause__
    except _CORRUPT as e:
        raise RefusedCheckpoint(
            f'Refused {name}: the file is cut short or corrupt '
            f'({type(e).__name__}: {e})') from e
    finally:
        if f is not path:
            f.close()


def check(path) -> None:
    """Raise unless ``path`` is a whole file that :func:`load` would
    open: a zip archive cut short loses the directory at its end. For a
    zip archive, reads only the directory and the pickle (whose checksum
    zipfile verifies); a legacy file is read whole."""
    _read(path, 'cpu', whole=False)


def load(path, map_location=None) -> Any:
    """``torch.load`` for a ``torch.save`` file at ``path`` (a file name or
    binary file object; the zip archive or torch's legacy format), reading
    only tensors and plain data.

    Raises:
        RefusedCheckpoint (a ``pickle.UnpicklingError``) naming the file
        and what was refused or is wrong with it; FileNotFoundError if
        ``path`` is not a file.
    """
    return _read(path, map_location, whole=True)
