"""A fuzzer for :mod:`mmpoolformer.safeload`: mutants of checkpoint files
(bytes flipped, cut, chunks repeated or zeroed, and the zip archive's
pickle mutated under a fixed checksum) read in child processes, many per
child. Each mutant must be refused with ``RefusedCheckpoint`` or load
whole: a crash, a hang, or any other exception is a finding, and the
mutant that caused it is named.

Long mode: ``python tests/helpers/fuzz.py 5000 [seed]``.
"""
import argparse
import collections
import io
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Dict, List, Tuple

#: Seconds one child may take per mutant before it counts as hung.
PER_MUTANT_S = 10
#: Memory a child may add while reading (a bound far above any mutant's
#: honest need, so that an allocation amplifier shows as MemoryError).
EXTRA_MEMORY = 2 << 30
#: A mutant on which the child aborts: the harness's own test.
CRASH = b'fuzz: abort here'


def seeds() -> Dict[str, bytes]:
    """An mmengine-style checkpoint (tensors of several dtypes and a view,
    numpy arrays and scalars, the message hub, a Counter, a Namespace, an
    optimizer state) in the zip archive and in the legacy format."""
    import numpy as np
    import torch
    from mmengine.logging import MessageHub
    hub = MessageHub('fuzz-seed')
    for v in (1.5, 0.5):
        hub.update_scalar('train/loss', v)
    hub.update_info('iter', np.int64(7))
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1),
                                torch.nn.BatchNorm2d(3))
    base = torch.arange(12.).reshape(3, 4)
    obj = {
        'meta': {'epoch': 1, 'seed': np.int64(3), 'lr': np.float64(0.1),
                 'classes': ('a', 'b'), 'hist': np.arange(4, dtype='<f4'),
                 'tags': {'x', 'y'}, 'c': 1 + 2j, 'blob': bytearray(b'ab')},
        'state_dict': model.state_dict(),
        'optimizer': {'state': {0: {'momentum_buffer': torch.ones(3)}},
                      'param_groups': [{'lr': 0.1, 'params': [0]}]},
        'param_schedulers': [{'milestones': collections.Counter([3, 4, 4])}],
        'message_hub': hub.state_dict(),
        'args': argparse.Namespace(lr=0.1, arch='s12'),
        'view': base[1:, ::2], 'base': base,
        'half': torch.ones(2, dtype=torch.float16),
        'param': torch.nn.Parameter(torch.ones(2)),
    }
    out = {}
    for name, zip_ in (('zip', True), ('legacy', False)):
        buf = io.BytesIO()
        torch.save(obj, buf, _use_new_zipfile_serialization=zip_)
        out[name] = buf.getvalue()
    return out


def _pickle_mutant(data: bytes, rng: random.Random) -> bytes:
    """The zip archive with its data.pkl mutated and its checksum right,
    so that the mutant reaches the pickle machine."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w') as dst:
        for info in src.infolist():
            record = src.read(info)
            if info.filename.endswith('data.pkl'):
                record = _mutate_bytes(record, rng)
            dst.writestr(info.filename, record)
    return out.getvalue()


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    kind = rng.choice(('flip', 'flip', 'byte', 'cut', 'repeat', 'zero'))
    if kind == 'flip':
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
    elif kind == 'byte':
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 'cut':
        del data[rng.randrange(len(data)):]
    elif kind == 'repeat':
        at = rng.randrange(len(data))
        n = rng.randint(1, 64)
        data[at:at] = data[at:at + n] * rng.randint(1, 4)
    else:
        at = rng.randrange(len(data))
        data[at:at + rng.randint(1, 32)] = bytes(rng.randint(1, 32))
    return bytes(data)


def mutants(files: Dict[str, bytes], count: int,
            seed: int = 0) -> List[Tuple[str, bytes]]:
    """``count`` (label, bytes) mutants of ``files``, the same for a
    seed."""
    rng = random.Random(seed)
    names = sorted(files)
    out = []
    for i in range(count):
        name = names[i % len(names)]
        data = files[name]
        if name.startswith('zip') and rng.random() < 0.5:
            out.append((f'{name}/pickle#{i}', _pickle_mutant(data, rng)))
        else:
            out.append((f'{name}#{i}', _mutate_bytes(data, rng)))
    return out


def _touch(obj, depth=0):
    """Read every byte of every tensor and array the load gave."""
    import numpy as np
    import torch
    if depth > 200:
        return
    if isinstance(obj, torch.Tensor):
        obj.detach().to(torch.float64).sum().item()
    elif isinstance(obj, np.ndarray):
        obj.tobytes()
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _touch(k, depth + 1)
            _touch(v, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _touch(v, depth + 1)
    elif hasattr(obj, '__dict__'):
        _touch(vars(obj), depth + 1)


def read(data: bytes) -> str:
    """'loaded' or 'refused', reading ``data`` in this process; anything
    else raises."""
    from mmpoolformer import safeload
    try:
        _touch(safeload.load(io.BytesIO(data)))
        return 'loaded'
    except safeload.RefusedCheckpoint:
        return 'refused'


def _child(path: str):
    """Read each mutant in ``path``; print 'start i' before and 'done i
    outcome' after each."""
    import resource

    from mmpoolformer import safeload
    with open('/proc/self/status') as f:
        vm = next(int(line.split()[1]) * 1024 for line in f
                  if line.startswith('VmSize'))
    resource.setrlimit(resource.RLIMIT_AS, (vm + EXTRA_MEMORY, ) * 2)
    with open(path, 'rb') as f:
        items = pickle.load(f)  # written by this module's run()
    for i, data in items:
        print('start', i, flush=True)
        if data == CRASH:  # the harness's own test
            os.abort()
        try:
            result = safeload.load(io.BytesIO(data))
            _touch(result)
            outcome = 'loaded'
        except safeload.RefusedCheckpoint:
            outcome = 'refused'
        except BaseException as e:  # noqa: BLE001 - every other is a finding
            outcome = f'foreign {type(e).__name__}: {str(e)[:200]}'
        print('done', i, outcome.replace('\n', ' '), flush=True)


def run(items: List[Tuple[str, bytes]], batch: int = 200):
    """Read ``items`` in children, ``batch`` per child. Returns (counts of
    outcomes, findings: label -> what happened)."""
    counts = collections.Counter()
    findings = {}
    queue = list(enumerate(items))
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    while queue:
        todo, queue = queue[:batch], queue[batch:]
        with tempfile.NamedTemporaryFile(suffix='.pkl', delete=False) as f:
            pickle.dump([(i, data) for i, (_, data) in todo], f)
        try:
            proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), '--child',
                 f.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env=env)
            try:
                out, err = proc.communicate(
                    timeout=30 + PER_MUTANT_S * len(todo) / 10)
                hung = False
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                hung = True
        finally:
            os.remove(f.name)
        done, started = {}, None
        for line in out.splitlines():
            word, _, rest = line.partition(' ')
            if word == 'start':
                started = int(rest)
            elif word == 'done':
                i, _, outcome = rest.partition(' ')
                done[int(i)] = outcome
        for i, outcome in done.items():
            kind = outcome.split(' ')[0]
            counts[kind] += 1
            if kind not in ('loaded', 'refused'):
                findings[items[i][0]] = outcome
        left = [(i, d) for i, d in todo if i not in done]
        if left:
            bad = started if started not in done else left[0][0]
            what = 'hang' if hung else f'crash (exit {proc.returncode})'
            counts[what.split(' ')[0]] += 1
            findings[items[bad][0]] = f'{what}: {err[-300:]}'
            queue = [(i, d) for i, d in left if i != bad] + queue
    return counts, findings


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('count', type=int, nargs='?', default=5000)
    parser.add_argument('seed', type=int, nargs='?', default=0)
    parser.add_argument('--child')
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    start = time.time()
    counts, findings = run(mutants(seeds(), args.count, args.seed))
    print(f'{args.count} mutants (seed {args.seed}) in '
          f'{time.time() - start:.0f} s: {dict(counts)}')
    for label, what in findings.items():
        print(f'  {label}: {what}')
    sys.exit(1 if findings else 0)


if __name__ == '__main__':
    main()
