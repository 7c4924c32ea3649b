"""mmpoolformer.safeload: torch.save archives read without running anything,
on every torch, including files shaped like the published bypasses of
torch's own weights-only loader."""
import argparse
import collections
import io
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub

from mmpoolformer import safeload
from mmpoolformer.safeload import RefusedCheckpoint


def saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def rewrite(archive: bytes, **records: bytes) -> bytes:
    """``archive`` with the named records (``data_pkl``, ``data_0``, ...;
    relative to its folder) replaced."""
    src = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w') as dst:
        for info in src.infolist():
            rel = info.filename.split('/', 1)[1].replace('/', '_').replace(
                '.', '_')
            dst.writestr(info.filename, records.get(rel, src.read(info)))
    return out.getvalue()


def load_bytes(data: bytes, **kwargs):
    return safeload.load(io.BytesIO(data), **kwargs)


def assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape, a.stride(), a.requires_grad) == \
            (b.dtype, b.shape, b.stride(), b.requires_grad)
        assert torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        assert getattr(a, '_metadata', None) == getattr(b, '_metadata', None)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif hasattr(a, '__dict__'):
        assert_same(vars(a), vars(b))
    else:
        assert a == b


def checkpoint_like():
    """What mmengine, timm and mmcv 1.x runners save: module state dicts
    with _metadata, parameters, views, every float dtype, numpy arrays and
    scalars, the message hub's HistoryBuffers, sets, tuples, Namespaces."""
    hub = MessageHub('safeload-test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('iter', np.int64(7))
    base = torch.arange(16.).reshape(4, 4)
    return {
        'meta': {'CLASSES': ('cat', 'dog'), 'PALETTE': [[1, 2, 3]],
                 'seed': np.int64(3), 'best': np.float64(0.25),
                 'hist': np.arange(6, dtype=np.float32).reshape(2, 3),
                 'tags': {'a', 'b'}, 'c': 1 + 2j},
        'state_dict': torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1),
                                          torch.nn.BatchNorm2d(3)
                                          ).state_dict(),
        'param': torch.nn.Parameter(torch.ones(2)),
        'view': base[1:, ::2], 'base': base,
        'dtypes': [torch.zeros(2, dtype=d) for d in (
            torch.float16, torch.bfloat16, torch.float64, torch.int64,
            torch.uint8, torch.bool)],
        'empty': torch.empty(0, 3), 'scalar': torch.tensor(2.5),
        'message_hub': hub.state_dict(),
        'args': argparse.Namespace(lr=0.1, model='poolformer_s12'),
        'rng': (np.random.get_state(), torch.get_rng_state()),
    }


def test_reads_what_torch_load_reads():
    data = saved(checkpoint_like())
    ref = torch.load(io.BytesIO(data), weights_only=False)
    got = load_bytes(data)
    assert_same(ref, got)
    # views keep sharing their storage, as torch.load gives them
    assert got['view'].untyped_storage().data_ptr() == \
        got['base'].untyped_storage().data_ptr()
    hub = MessageHub('restored')
    hub.load_state_dict(got['message_hub'])
    assert hub.get_scalar('train/loss').mean() == 1.0


@pytest.mark.parametrize('map_location', [
    None, 'cpu', torch.device('cpu'), {'cpu': 'cpu'},
    lambda storage, location: storage])
def test_map_location(map_location):
    t = load_bytes(saved({'w': torch.ones(3)}), map_location=map_location)
    assert torch.equal(t['w'], torch.ones(3))


def test_map_location_callable_sees_every_storage():
    seen = []

    def where(storage, location):
        seen.append(location)
        return storage

    load_bytes(saved({'a': torch.ones(3), 'b': torch.zeros(2)}),
               map_location=where)
    assert seen == ['cpu', 'cpu']


def test_file_path_and_missing_file(tmp_path):
    path = tmp_path / 'ok.pth'
    torch.save({'w': torch.ones(1)}, path)
    assert torch.equal(safeload.load(str(path))['w'], torch.ones(1))
    safeload.check(str(path))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        safeload.load(str(tmp_path / 'nope.pth'))


def test_truncated_file_fails_check(tmp_path):
    path = tmp_path / 'cut.pth'
    data = saved({'w': torch.ones(1000)})
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(RefusedCheckpoint, match='not a whole torch.save'):
        safeload.check(str(path))


class Payload:
    """Pickles as a call that creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


def test_code_in_pickle_refused(tmp_path):
    marker = tmp_path / 'ran'
    with pytest.raises(RefusedCheckpoint, match=r'io.open, which is neither'):
        load_bytes(saved({'w': torch.ones(1), 'x': Payload(marker)}))
    assert not marker.exists()


def saved_legacy(obj, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize('protocol', [2, 4])
def test_legacy_format_read(protocol):
    """torch's legacy stream (what mmdet's publish_model.py writes)."""
    data = saved_legacy(checkpoint_like(), pickle_protocol=protocol)
    ref = torch.load(io.BytesIO(data), weights_only=False)
    got = load_bytes(data)
    assert_same(ref, got)
    assert got['view'].untyped_storage().data_ptr() == \
        got['base'].untyped_storage().data_ptr()


def test_legacy_payload_refused(tmp_path):
    marker = tmp_path / 'ran'
    with pytest.raises(RefusedCheckpoint, match=r'io.open, which is neither'):
        load_bytes(saved_legacy({'w': torch.ones(1), 'x': Payload(marker)}))
    assert not marker.exists()


def test_plain_pickle_refused(tmp_path):
    marker = tmp_path / 'ran'
    for data in (pickle.dumps(Payload(marker)), pickle.dumps({'a': 1}),
                 b'', b'not a checkpoint'):
        with pytest.raises(RefusedCheckpoint, match=r'plain pickle.*'
                           r'torch.load\(path, weights_only=False\)'):
            load_bytes(data)
    assert not marker.exists()


def test_pre_1_0_tar_format_refused(tmp_path):
    """torch < 1.0 wrote a tar of 'storages', 'tensors' and 'pickle'."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as t:
        for member in ('storages', 'tensors', 'pickle'):
            info = tarfile.TarInfo(member)
            info.size = 4
            t.addfile(info, io.BytesIO(pickle.dumps(0)[:4]))
    with pytest.raises(RefusedCheckpoint, match=r'pre-1.0 tar format.*'
                       r'weights_only=False'):
        load_bytes(buf.getvalue())


class Stored:
    """Stands for a storage in :func:`legacy_stream`'s main pickle."""

    def __init__(self, key, numel, kind='FloatStorage', view=None):
        self.key, self.numel, self.kind, self.view = key, numel, kind, view


def legacy_stream(obj, records, keys=None, magic=0x1950a86a20f9469cfc6c,
                  version=1001, info=None) -> bytes:
    """A legacy stream written by hand: ``obj``'s pickle (its
    :class:`Stored` become persistent ids), then the keys (those of
    ``records`` unless given) and ``records``: key -> (count, bytes)."""
    out = io.BytesIO()
    for value in (magic, version, info or dict(
            protocol_version=1001, little_endian=True,
            type_sizes=dict(short=2, int=4, long=4))):
        pickle.dump(value, out, protocol=2)

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Stored):
                return ('storage', getattr(torch, o.kind), o.key, 'cpu',
                        o.numel, o.view)
            return None

    Pickler(out, protocol=2).dump(obj)
    pickle.dump(sorted(records) if keys is None else keys, out, protocol=2)
    for key in sorted(records):
        count, data = records[key]
        out.write(struct.pack('<q', count) + data)
    return out.getvalue()


def test_legacy_stream_by_hand_reads():
    """The layout written here is torch's: torch.load reads it too."""
    data = legacy_stream({'w': Rebuild(Stored('7', 4), 1, (3, ), (1, ))},
                         {'7': (4, struct.pack('<4f', 0, 1, 2, 3))})
    for load in (load_bytes, lambda d: torch.load(io.BytesIO(d),
                                                  weights_only=False)):
        assert torch.equal(load(data)['w'], torch.tensor([1., 2., 3.]))


@pytest.mark.parametrize('kwargs,match', [
    # the element count before the bytes must be what the id declared
    (dict(records={'7': (5, bytes(16))}), 'declares 4 elements but its '
     'record says 5'),
    (dict(records={'7': (4, bytes(12))}), 'cut short'),
    (dict(records={'7': (4, bytes(20))}), '4 bytes after its last storage'),
    (dict(records={'7': (4, bytes(16))}, keys=['7', '8']), 'storage keys'),
    (dict(records={}), 'storage keys'),
    (dict(records={'7': (4, bytes(16))}, magic=7), 'plain pickle'),
    (dict(records={'7': (4, bytes(16))}, version=1000), 'protocol version'),
    (dict(records={'7': (4, bytes(16))}, info=dict(little_endian=False)),
     'big-endian'),
])
def test_legacy_bad_records_refused(kwargs, match):
    data = legacy_stream({'w': Rebuild(Stored('7', 4), 0, (4, ), (1, ))},
                         **kwargs)
    with pytest.raises(RefusedCheckpoint, match=match):
        load_bytes(data)


def test_legacy_storage_larger_than_file_refused_unallocated():
    """A persistent id declaring 2**40 floats: refused before anything is
    allocated (it would need 4 TiB)."""
    data = legacy_stream({'w': Rebuild(Stored('7', 2**40), 0, (4, ), (1, ))},
                         {'7': (2**40, bytes(16))})
    with pytest.raises(RefusedCheckpoint, match='declare .* bytes or more, '
                       'but the file holds'):
        load_bytes(data)


def test_legacy_storage_views():
    """torch < 1.0's storage views: windows on a root storage."""
    view = Stored('7', 6, view=('9', 2, 3))
    data = legacy_stream({'w': Rebuild(view, 1, (2, ), (1, ))},
                         {'7': (6, struct.pack('<6f', *range(6)))})
    assert torch.equal(load_bytes(data)['w'], torch.tensor([3., 4.]))
    outside = Stored('7', 6, view=('9', 4, 3))
    with pytest.raises(RefusedCheckpoint, match='storage view'):
        load_bytes(legacy_stream({'w': Rebuild(outside, 0, (1, ), (1, ))},
                                 {'7': (6, bytes(24))}))


def test_torchscript_archive_refused(tmp_path):
    """GHSA-53q9-r3pm-6pq6 (torch <= 2.5.1): torch.load(weights_only=True)
    hands a TorchScript archive to torch.jit.load, whose unpickler runs the
    archive's own ``__setstate__`` code."""
    path = tmp_path / 'scripted.pth'
    torch.jit.save(torch.jit.script(Stateful()), str(path))
    with pytest.raises(RefusedCheckpoint, match='TorchScript archive'):
        safeload.load(str(path))
    if torch.__version__ < '2.6':
        # the bypass itself, on this torch: the archive's code runs
        out = subprocess.run(
            [sys.executable, '-c',
             f'import torch; torch.load({str(path)!r}, weights_only=True)'],
            capture_output=True, text=True, check=True)
        assert 'setstate ran' in out.stdout


class Stateful(torch.nn.Module):
    """A module whose TorchScript ``__setstate__`` prints on load."""

    def __init__(self):
        super().__init__()
        self.w = torch.ones(1)

    def forward(self, x):
        return x * self.w

    @torch.jit.export
    def __getstate__(self):
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state):
        print('setstate ran')
        self.w = state[0]
        self.training = state[1]


class SetItemsOn:
    """Pickles as ``_rebuild_tensor_v2(...)`` followed by SETITEMS on the
    tensor it returns (CVE-2026-24747's first route: SETITEM(S) applied to
    an object that is not a dict)."""

    def __init__(self, tensor, items):
        self.tensor, self.items = tensor, items

    def __reduce__(self):
        t = self.tensor
        return (torch._utils._rebuild_tensor_v2,
                (t.storage(), 0, tuple(t.shape), t.stride(), False,
                 __import__('collections').OrderedDict()), None, None,
                iter(self.items))


def test_setitems_on_non_dict_refused():
    data = saved({'w': SetItemsOn(torch.zeros(4), [(10**6, 1.0)])})
    with pytest.raises(RefusedCheckpoint, match='SETITEMS? on Tensor'):
        load_bytes(data)


class Rebuild:
    """Pickles as ``_rebuild_tensor_v2`` with the given size, stride and
    offset over ``storage``."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                self.args + (False, __import__('collections').OrderedDict()))


@pytest.mark.parametrize('offset,size,stride', [
    (0, (5, ), (1, )),        # one element past the end
    (3, (2, ), (1, )),        # offset pushes it out
    (0, (2, 2), (3, 1)),      # stride pushes it out
    (0, (2, ), (-1, )),       # negative stride
    (-1, (1, ), (1, )),       # negative offset
])
def test_tensor_outside_its_storage_refused(offset, size, stride):
    data = saved({'w': Rebuild(torch.zeros(4).storage(), offset, size,
                               stride)})
    with pytest.raises(RefusedCheckpoint, match='tensor size'):
        load_bytes(data)


def test_inside_its_storage_read():
    storage = torch.arange(4.).storage()
    t = load_bytes(saved({'w': Rebuild(storage, 1, (3, ), (1, ))}))['w']
    assert torch.equal(t, torch.tensor([1., 2., 3.]))


def test_storage_record_shorter_than_declared_refused():
    """CVE-2026-24747's second route: a storage whose declared element
    count needs more bytes than its record holds."""
    data = rewrite(saved({'w': torch.zeros(64)}), data_0=b'\0' * 16)
    with pytest.raises(RefusedCheckpoint, match='declares 64 elements'):
        load_bytes(data)


def test_numpy_object_arrays_and_records_refused():
    for value in (np.array([None, 1], dtype=object),
                  np.zeros(2, dtype=[('a', 'f4')])):
        with pytest.raises(RefusedCheckpoint, match='numpy'):
            load_bytes(saved({'x': value}))


def test_getattr_only_for_history_buffer():
    class GetAttr:
        def __reduce__(self):
            return getattr, (collections.OrderedDict, 'fromkeys')

    with pytest.raises(RefusedCheckpoint, match='getattr'):
        load_bytes(saved({'x': GetAttr()}))


def test_unknown_opcodes_refused():
    # protocol 4 (FRAME, MEMOIZE, SHORT_BINUNICODE), which torch.save
    # writes when asked to
    data = pickle.dumps({'x': argparse.Namespace(lr=0.1)}, protocol=4)
    archive = rewrite(saved({'x': 1}), data_pkl=data)
    # ... reads fine ...
    assert vars(load_bytes(archive)['x']) == dict(lr=0.1)
    # ... but opcodes of objects we never allow do not
    archive = rewrite(saved({'x': 1}), data_pkl=b'\x80\x02(i os\nsystem\n.')
    with pytest.raises(RefusedCheckpoint, match='INST'):
        load_bytes(archive)


def test_torchscript_refused_through_the_package_loaders(tmp_path, capfd):
    """The bypass through every way the package reads a file: the
    package's reader, mmengine's (as load_from, resume and init_model use
    it) and a backbone's init_cfg. On torch <= 2.5.1 torch.load's
    weights-only loader would run the archive's ``__setstate__``."""
    from mmengine.runner import load_checkpoint

    from mmpoolformer import PoolFormer
    from mmpoolformer.weights import CheckpointFormatError, read_checkpoint
    path = str(tmp_path / 'scripted.pth')
    torch.jit.save(torch.jit.script(Stateful()), path)
    loads = [
        lambda: read_checkpoint(path),
        lambda: load_checkpoint(torch.nn.Linear(1, 1), path),
        lambda: PoolFormer('s12', init_cfg=dict(
            type='Pretrained', checkpoint=path)).init_weights(),
    ]
    for load in loads:
        with pytest.raises((RefusedCheckpoint, CheckpointFormatError),
                           match='TorchScript archive'):
            load()
    assert 'setstate ran' not in capfd.readouterr().out


# --- crafted files: objects changed after something holds them -------------

def glob(module, name) -> bytes:
    return b'c' + f'{module}\n{name}\n'.encode()


def ints(*values) -> bytes:
    return b''.join(b'J' + struct.pack('<i', v) for v in values)


def text(s: str) -> bytes:
    return b'X' + struct.pack('<I', len(s)) + s.encode()


def dtype_state(order, elsize, align, flags) -> bytes:
    return b'(' + ints(3) + text(order) + b'NNN' + ints(elsize, align,
                                                        flags) + b't'


def dtype(spec, state=b'') -> bytes:
    """numpy's pickle of ``numpy.dtype(spec)``, memo 0."""
    return glob('numpy', 'dtype') + text(spec) + b'\x89\x88\x87Rq\x00' + \
        (state + b'b' if state else b'')


def array(shape, data: bytes) -> bytes:
    """numpy's pickle of an array of dtype memo 0 (made before)."""
    return glob('numpy.core.multiarray', '_reconstruct') + \
        glob('numpy', 'ndarray') + ints(0) + b'\x85' + b'C\x01b' + \
        b'\x87R(' + ints(1) + b'(' + ints(*shape) + b't' + b'h\x00\x89' + \
        b'B' + struct.pack('<I', len(data)) + data + b't' + b'b'


def as_file(pickled: bytes) -> bytes:
    return rewrite(saved({'x': 1}), data_pkl=b'\x80\x02' + pickled + b'.')


def test_crafted_numpy_pickles_are_numpys():
    """The crafted pickles are what numpy writes: pickle reads them."""
    pickled = b'\x80\x02' + dtype('S8', dtype_state('|', 8, 1, 0)) + b'0' + \
        array((4, ), b'abcdefgh' * 4) + b'.'
    a = pickle.loads(pickled)
    assert a.dtype == np.dtype('S8') and a.shape == (4, )
    assert load_bytes(as_file(pickled[2:-1])).tolist() == a.tolist()


def test_dtype_rewritten_after_an_array_holds_it_refused():
    """Issue 35: an S8 array of 4 items from 32 bytes, then its dtype's
    itemsize set to 1 MiB by a second BUILD: numpy would read and write
    4 MiB past the array's buffer. Refused because something (the array)
    holds the dtype; the state's new itemsize is refused on its own by
    the next test."""
    attack = dtype('S8') + b'0' + array((4, ), b'abcdefgh' * 4) + b'h\x00' + \
        dtype_state('|', 1 << 20, 1, 0) + b'b\x86'
    # what pickle itself makes of it: the array now claims 4 MiB
    a, _ = pickle.loads(b'\x80\x02' + attack + b'.')
    assert a.nbytes == 4 << 20
    with pytest.raises(RefusedCheckpoint, match='BUILD on a .* that '
                       'something holds'):
        load_bytes(as_file(attack))
    # even a state that restates the dtype exactly: nothing changes an
    # object something holds
    same = dtype('S8') + b'0' + array((4, ), b'abcdefgh' * 4) + b'h\x00' + \
        dtype_state('|', 8, 1, 0) + b'b\x86'
    with pytest.raises(RefusedCheckpoint, match='something holds'):
        load_bytes(as_file(same))


@pytest.mark.parametrize('state,what', [
    (dtype_state('|', 1 << 20, 1, 0), 'itemsize'),
    (dtype_state('<', -1, -1, 63), 'flags: int64 marked as objects'),
])
def test_dtype_state_must_restate_the_constructor(state, what):
    spec = 'S8' if what == 'itemsize' else 'i8'
    with pytest.raises(RefusedCheckpoint, match='may only restate'):
        load_bytes(as_file(dtype(spec, state)))
    # byte order is the one thing a state may change
    got = load_bytes(as_file(dtype('f8', dtype_state('>', -1, -1, 0))))
    assert got == np.dtype('>f8') and got.byteorder == '>'


def test_dtype_built_twice_refused():
    twice = dtype('f8', dtype_state('<', -1, -1, 0)) + \
        dtype_state('>', -1, -1, 0) + b'b'
    with pytest.raises(RefusedCheckpoint, match='was built'):
        load_bytes(as_file(twice))


def test_shared_dtype_descriptor_refused():
    """numpy.dtype(spec, False, False) is numpy's own descriptor, shared
    by the whole process: a BUILD would change every float64."""
    shared = glob('numpy', 'dtype') + text('f8') + b'\x89\x89\x87R'
    with pytest.raises(RefusedCheckpoint, match='plain numbers'):
        load_bytes(as_file(shared))


@pytest.mark.parametrize('shape,nbytes', [((4, ), 31), ((4, ), 33),
                                          ((2, 3), 40)])
def test_array_needs_exactly_its_bytes(shape, nbytes):
    with pytest.raises(RefusedCheckpoint, match='needs .* bytes'):
        load_bytes(as_file(dtype('f8') + b'0' + array(shape, bytes(nbytes))))


def test_numpy_scalar_needs_exactly_its_bytes():
    scalar = glob('numpy.core.multiarray', 'scalar') + dtype('f8') + \
        b'C\x04abcd\x86R'
    with pytest.raises(RefusedCheckpoint, match='exactly their bytes'):
        load_bytes(as_file(scalar))


@pytest.mark.parametrize('pickled,match', [
    # bytearray(2**40): 1 TiB from 8 bytes of file
    (glob('builtins', 'bytearray') + b'\x8a\x06' + (1 << 40).to_bytes(6,
     'little') + b'\x85R', 'bytearray'),
    # iterating a str, or a tensor, instead of a list
    (glob('collections', 'Counter') + text('aab') + b'\x85R', 'Counter of'),
    (glob('builtins', 'set') + text('ab') + b'\x85R', 'set of str'),
    (glob('builtins', 'complex') + text('1+2j') + b'\x85R', 'complex'),
])
def test_allocation_amplifiers_refused(pickled, match):
    with pytest.raises(RefusedCheckpoint, match=match):
        load_bytes(as_file(pickled))


def test_shared_list_copied_over_and_over_refused():
    """A 1000-item list copied by 10000 set() calls from memo references
    (a few bytes each) would make 10 million items from a 60 kB file."""
    items = b']q\x01(' + ints(*range(1000)) + b'e'
    calls = (glob('builtins', 'set') + b'q\x02' + b'(' +
             (b'h\x02h\x01\x85R0') * 10000 + b')')
    with pytest.raises(RefusedCheckpoint, match='copy more than the file'):
        load_bytes(as_file(items + b'0' + calls))


def test_deep_nesting_refused():
    """Python hashes a nested tuple recursively in C: a million-deep one
    as a dict key crashes the process (SIGSEGV)."""
    deep = b'}' + b')' + b'\x85' * 1000000 + ints(1) + b's'
    with pytest.raises(RefusedCheckpoint, match='nested over'):
        load_bytes(as_file(deep))


def test_mutating_a_held_container_refused():
    """A list filled after a dict holds it (what a cycle needs)."""
    pickled = b'}q\x00' + text('k') + b']q\x01s' + b'h\x01' + ints(1) + \
        b'a0'
    with pytest.raises(RefusedCheckpoint, match='APPEND on a list after'):
        load_bytes(as_file(pickled))


@pytest.mark.parametrize('size,stride,ok', [
    ((1000, ), (0, ), True),          # an expanded view: read
    ((1 << 30, ), (0, ), False),      # a billion elements from one
    ((1 << 13, 1 << 13), (1, 1), False),  # 64 Mi overlapping elements
])
def test_repeated_elements_bounded(size, stride, ok):
    data = saved({'w': Rebuild(torch.zeros(1 << 14).storage(), 0, size,
                               stride)})
    if ok:
        assert load_bytes(data)['w'].shape == size
    else:
        with pytest.raises(RefusedCheckpoint, match='repeated elements'):
            load_bytes(data)


def test_compressed_record_refused():
    """torch.save stores records as they are; a deflated one could
    inflate to far more than the file."""
    src = zipfile.ZipFile(io.BytesIO(saved({'w': torch.zeros(1000)})))
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    with pytest.raises(RefusedCheckpoint, match='compressed'):
        load_bytes(out.getvalue())


# --- every failure to read is a RefusedCheckpoint naming the file ----------

def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xff]) + data[at + 1:]


@pytest.mark.parametrize('legacy', [False, True])
def test_cut_and_corrupt_files_refused_by_name(tmp_path, legacy):
    data = (saved_legacy if legacy else saved)(checkpoint_like())
    path = tmp_path / 'bad.pth'
    cuts = [data[:n] for n in (1, 10, 100, len(data) // 2, len(data) - 1)]
    flips = [flip(data, n) for n in range(0, len(data), 151)]
    for bad in cuts + flips:
        path.write_bytes(bad)
        try:
            safeload.load(str(path))
        except RefusedCheckpoint as e:
            assert str(path) in str(e)
    path.write_bytes(data)
    assert_same(safeload.load(str(path)), load_bytes(data))


def test_checksum_mismatch_refused(tmp_path):
    """A flipped byte inside a stored record: zipfile's CRC check."""
    data = saved({'w': torch.arange(100.)})
    at = data.index(struct.pack('<f', 50.))
    path = tmp_path / 'crc.pth'
    path.write_bytes(flip(data, at))
    with pytest.raises(RefusedCheckpoint, match=r'crc.pth: .*corrupt.*CRC'):
        safeload.load(str(path))
