"""What the CPU and the GPU modes share: the networks (ours and timm's
holding the same weights), one timed step, the interleaved timing, peak
memory, and the description of the machine.

Timing is :mod:`torch.utils.benchmark`'s: its clock (which synchronises the
GPU before it reads the host's), one :class:`~torch.utils.benchmark.
Measurement` per implementation and pass, which
:class:`~torch.utils.benchmark.Compare` prints side by side. Its ``Timer``
runs one statement many times in a row; here every round runs each
implementation once, in an order that rotates, so that no implementation
always meets the same neighbour's freed memory and cache state, and the
first round's times (the one-time costs: 'auto''s measurement, compiling)
are kept apart.
"""
import os
import platform
import re
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from torch.utils import benchmark
from torch.utils.benchmark.utils.timer import timer as clock

from mmpoolformer.testing.precision import family_class
from mmpoolformer.testing.reference import (TimmFeatures, timm_metaformer,
                                            timm_poolformer)

PRECISIONS = dict(fp32=None, bf16=torch.bfloat16, fp16=torch.float16)


# -- the networks ------------------------------------------------------------

def timm_features(family: str, ref: nn.Module) -> TimmFeatures:
    """timm's network ``ref`` of ``family`` with the fresh output norms our
    ``family`` has (GroupNorm(1) or LayerNorm2d)."""
    cls = family_class(family)
    norm = cls.default_arch and cls.arch_settings[cls.default_arch].get(
        'norm')
    if norm in (None, 'sample'):  # PoolFormer v1 and PoolFormerV2
        return TimmFeatures(ref)
    from timm.layers import LayerNorm2d
    return TimmFeatures(ref, lambda c: LayerNorm2d(c, eps=1e-6))


class Pair:
    """Ours and timm's network ``name`` (e.g. 'caformer_s18') holding the
    same randomised weights and fresh output norms, in training mode on
    ``device``: ``impls`` maps labels to modules, ours first, built with
    each of ``variants`` ({label: keyword arguments}; default: ours as it
    is, and for PoolFormer v1 also with its fast path forced); :meth:`our_
    grads` renames timm's gradients to our parameter names."""

    def __init__(self, name: str, device: str = 'cpu',
                 variants: Optional[Dict[str, dict]] = None):
        from mmpoolformer.weights import convert, convert_metaformer
        family, arch = name.split('_')
        self.name, self.family, self.arch = name, family, arch
        cls = family_class(family)
        if family == 'poolformer':
            ref = timm_poolformer(arch)
            self.convert = lambda state: convert(state)[0]
            default = {'mmpoolformer': {},
                       'mmpoolformer fused=True': dict(fused=True)}
        else:
            ref = timm_metaformer(name)
            self.convert = lambda state: convert_metaformer(state)[0]
            default = {'mmpoolformer': {}}
        timm = timm_features(family, ref)
        state = self.convert(ref.state_dict())
        self.impls = {}
        for label, kwargs in (variants or default).items():
            ours = cls(arch, **kwargs)
            ours.load_state_dict({**ours.state_dict(), **state})
            self.impls[label] = ours
        self.impls['timm'] = timm
        for model in self.impls.values():
            model.to(device).train()

    def our_grads(self, timm: nn.Module) -> Dict[str, torch.Tensor]:
        """``timm``'s (a :class:`TimmFeatures`) parameter gradients under
        our names."""
        inner, norms = {}, {}
        for key, p in timm.named_parameters():
            if p.grad is None:
                continue
            if key.startswith('model.'):
                inner[key[len('model.'):]] = p.grad
            else:  # norms.{i}.{weight,bias}
                _, i, rest = key.split('.', 2)
                norms[f'norm{i}.{rest}'] = p.grad
        return {**self.convert(inner), **norms}


# -- one step and its time -----------------------------------------------------

def step(model: nn.Module, x: torch.Tensor, backward: bool,
         dtype: Optional[torch.dtype] = None):
    """One forward (without autograd unless ``backward``) and backward
    under autocast to ``dtype`` (None: fp32); returns the outputs."""
    with torch.set_grad_enabled(backward), torch.autocast(
            x.device.type, dtype=dtype, enabled=dtype is not None):
        outs = model(x)
        if backward:
            sum(o.float().mean() for o in outs).backward()
    return outs


def sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def wall(fn: Callable[[], None], device: torch.device) -> float:
    """Host seconds until ``fn``'s work is done (compiling is host work)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


class Timings(dict):
    """:func:`time_all`'s result: ``(label, backward)``: median seconds,
    ``('first', label, backward)``: the first round's seconds; and
    ``measurements``, one :class:`~torch.utils.benchmark.Measurement` per
    label and pass."""
    measurements: List[benchmark.Measurement]


def time_all(impls: Dict[str, nn.Module], x: torch.Tensor, runs: int,
             warmup: int, dtype: Optional[torch.dtype] = None,
             label: str = '') -> Timings:
    """Forward (``backward`` False) and forward+backward seconds of every
    module in ``impls`` on ``x`` after ``warmup`` untimed rounds, run by run
    interleaved, the order rotating every round; medians over ``runs``."""
    names = list(impls)
    times = {(k, b): [] for k in names for b in (False, True)}
    out = Timings()
    for backward in (False, True):
        for r in range(warmup + runs):
            # round 0 runs the first (ours by default) last, after the
            # others have paid the shape's one-time costs: its first run's
            # excess over its median is then 'auto''s measurement
            k = (r + 1) % len(names)
            for name in names[k:] + names[:k]:
                model = impls[name]
                model.zero_grad(set_to_none=True)
                t0 = clock()
                step(model, x, backward, dtype)
                took = clock() - t0
                if r == 0:
                    out[('first', name, backward)] = took
                if r >= warmup:
                    times[(name, backward)].append(took)
    threads = torch.get_num_threads()
    out.measurements = []
    for (name, backward), ts in times.items():
        m = benchmark.Measurement(
            number_per_run=1, raw_times=ts, task_spec=benchmark.TaskSpec(
                stmt='step(model, x, backward, dtype)', setup='',
                label=label or 'x'.join(map(str, x.shape)), sub_label=name,
                description='fwd+bwd' if backward else 'forward',
                num_threads=threads))
        out.measurements.append(m)
        out[(name, backward)] = m.median  # of an even count: the middle mean
    return out


def compare(measurements: Sequence[benchmark.Measurement]) -> str:
    """torch's side-by-side table of ``measurements``."""
    table = benchmark.Compare(list(measurements))
    table.trim_significant_figures()
    return str(table)


def peak_mib(model: nn.Module, x: torch.Tensor, backward: bool,
             dtype) -> Optional[float]:
    """Peak memory one step allocates above what is held before it (the
    weights, the input), in MiB; None off CUDA."""
    if x.device.type != 'cuda':
        return None
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    base = torch.cuda.memory_allocated(x.device)
    step(model, x, backward, dtype)
    torch.cuda.synchronize(x.device)
    return (torch.cuda.max_memory_allocated(x.device) - base) / 2**20


def rss_peak_mib(fn: Callable[[], None]) -> float:
    """Growth of this process's RSS high-water mark while ``fn`` runs, in
    MiB (Linux). ru_maxrss survives exec (it would hold the parent's peak):
    this is the process's own mark, reset to the current RSS first."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    base = _status_kb('VmRSS')
    fn()
    return (_status_kb('VmHWM') - base) / 1024


def _status_kb(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


# -- compiling ---------------------------------------------------------------

def graphs_compiled() -> int:
    """Graphs dynamo has handed to a backend in this process so far."""
    from torch._dynamo.utils import counters
    return counters['stats']['unique_graphs']


def fresh_dynamo():
    """Forget compiled code, so each measurement compiles from scratch
    (inductor's on-disk caches stay: a second run may compile faster)."""
    torch._dynamo.reset()
    # one graph per (grad mode, precision) at most here: room to spare
    torch._dynamo.config.cache_size_limit = max(
        torch._dynamo.config.cache_size_limit, 16)


class exact_fp32:
    """A context without TF32 (cuDNN uses it for fp32 convolutions by
    default, rounding to 10 mantissa bits)."""

    def __enter__(self):
        self.flags = (torch.backends.cudnn.allow_tf32,
                      torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc):
        (torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = self.flags


# -- the machine -------------------------------------------------------------

def cpu_name(path='/proc/cpuinfo'):
    """The processor's model name and widest vector extension (the CPU
    kernels' speed depends on both), from ``path`` where there is one."""
    try:
        with open(path) as f:
            info = f.read()
    except OSError:
        return platform.processor() or platform.machine()
    model = re.search(r'^model name\s*:\s*(.+)$', info, re.M)
    flags = re.search(r'^flags\s*:(.*)$', info, re.M)
    flags = set(flags.group(1).split()) if flags else set()
    simd = next((f for f in ('avx512f', 'avx2', 'neon', 'asimd')
                 if f in flags), None)
    return ', '.join(filter(None, [
        model.group(1).strip() if model else platform.machine(),
        simd and simd.replace('avx512f', 'AVX-512').upper()]))


def device_name(device: torch.device) -> str:
    """The GPU's name, or the processor's (:func:`cpu_name`)."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return cpu_name()


def environment(device: str) -> dict:
    import mmpoolformer
    env = dict(device=device, python=platform.python_version(),
               torch=torch.__version__, cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version(),
               mmpoolformer=mmpoolformer.__version__,
               threads=torch.get_num_threads(),
               cudnn_tf32=torch.backends.cudnn.allow_tf32,
               matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
               cudnn_benchmark=torch.backends.cudnn.benchmark)
    try:
        import timm
        env['timm'] = timm.__version__
    except ImportError:
        env['timm'] = None
    if torch.device(device).type == 'cuda':
        env['gpu'] = torch.cuda.get_device_name(device)
        env['capability'] = '.'.join(
            map(str, torch.cuda.get_device_capability(device)))
    else:
        env['gpu'] = None
        env['cpu'] = cpu_name()
    return env


#: the folder that holds ``benchmarks/`` (the checkout's root)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
