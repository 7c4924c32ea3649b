"""The benchmark harness (the checkout's ``benchmarks/``) and
tools/benchmark.py, which runs it. The GPU matrix (``--matrix gpu``): the
whole pipeline at its quick size on the CPU, what it chooses to compile
within its budget, and the sizes of its dynamic-shape study; the CPU
comparison (no ``--matrix``, the tool's default): its order of runs, what it
says 'auto' ran, the processor it names and its torch.utils.benchmark
measurements; the tool outside a checkout; the backbone check."""
import importlib.util
import json
import os
import os.path as osp
import shutil
import statistics
import subprocess
import sys

import pytest
import torch

from benchmarks import backbones, cpu, harness
from benchmarks import gpu as bench
from helpers.checkout import REPO, TOOLS, run, tool
from mmpoolformer import PoolFormer


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool', osp.join(TOOLS, 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # minutes on a loaded 2-core machine
def test_quick_matrix_runs_every_part(tmp_path):
    # A budget no run reaches: quick's 3 compiled tasks are then chosen by
    # count, so the verdict does not depend on the machine's load (the
    # budget's own logic: test_budget_guesses_from_what_it_measured).
    proc = run(tool('benchmark.py', '--matrix', 'gpu', '--device', 'cpu',
                    '--quick', '--budget-s', '86400', '--out', tmp_path),
               timeout=1800)
    res = json.loads((tmp_path / 'benchmark.json').read_text())
    assert res['ok'] and res['settings']['quick']
    families = res['settings']['families']
    assert [r['family'] for r in res['agreement']] == [
        'poolformer_s12', 'poolformer_s12', 'caformer_s18']
    assert {(r['family'], r['dtype'], r['activations'])
            for r in res['autocast']} == {
        (f, d, a) for f in families for d, a in [
            ('bf16', 'ordinary'), ('fp16', 'ordinary'), ('fp16', 'large')]}
    eager = {(r['family'], r['impl'], r['precision'], r['case'], r['mode'])
             for r in res['speed'] if not r['compiled']}
    for f in families:
        for mode in ('forward', 'fwd+bwd'):
            for impl in ('mmpoolformer', 'timm'):
                assert {(f, impl, p, c, mode) for p, c in [
                    ('fp32', 'det2'), ('bf16', 'det2'), ('fp16', 'det2'),
                    ('fp32', 'seg4'), ('bf16', 'seg4')]} <= eager
            assert (f, 'timm', 'fp16', 'seg4', mode) not in eager
    assert ('poolformer_s12', 'mmpoolformer fused=True', 'fp32', 'det2',
            'fwd+bwd') in eager
    assert not any('fused=True' in k[1] and k[2] != 'fp32' for k in eager)
    # the first three compiled tasks, in compile_plan's order
    assert [(r['family'], r['impl'], r['precision'], r['case'])
            for r in res['compile']] == [
        (f, i, 'bf16', 'det2') for f in families
        for i in ('mmpoolformer', 'timm')]
    assert all(r['graphs_fwd_bwd'] >= 1 and r['graphs_forward'] >= 1
               for r in res['compile'])
    compiled = [r for r in res['speed'] if r['compiled']]
    assert len(compiled) == 2 * 2 * 2  # families, impls, modes
    runs = res['dynamic']['runs']
    assert list(runs) == ['eager', 'dynamic=None', 'dynamic=True']
    assert runs['eager']['graphs'] == 0
    assert runs['dynamic=True']['recompiles'] == 0
    # static first, then recompiled with dynamic sizes
    assert runs['dynamic=None']['graphs'] >= 2
    assert len(res['skipped']) == len(bench.compile_plan(
        families, list(res['settings']['cases']))) - 3
    md = (tmp_path / 'benchmark.md').read_text()
    for heading in ('fp32 agreement', 'Autocast', 'Speed at det2',
                    'Speed at seg4', 'Compile time', 'Dynamic shapes',
                    'Left out', 'measure nothing'):
        assert heading in md
    assert 'checks: all passed' in proc.stdout
    assert str(tmp_path / 'benchmark.md') in proc.stdout


def test_failed_check_exits_1_after_writing(tmp_path, monkeypatch, capsys):
    module = load_tool()
    result = dict(ok=False, agreement=[dict(ok=False, family='x')],
                  autocast=[], skipped=[])
    monkeypatch.setattr(bench, 'run_matrix', lambda s: result)
    monkeypatch.setattr(bench, 'write', lambda res, out: [str(out)])
    monkeypatch.setattr(bench, 'summary', lambda res: 'checks: 1 FAILED')
    with pytest.raises(SystemExit) as e:
        module.main(['--matrix', 'gpu', '--device', 'cpu', '--quick',
                     '--out', str(tmp_path)])
    assert e.value.code == 1
    assert 'checks: 1 FAILED' in capsys.readouterr().out


@pytest.mark.parametrize('argv, match', [
    (['--matrix', 'gpu', '--device', 'cpu', '--out', 'x'], 'add --quick'),
    (['--matrix', 'gpu', '--device', 'cpu', '--quick'], 'go together'),
    (['--quick', '--out', 'x'], 'go together'),
])
def test_bad_matrix_arguments(argv, match, capsys):
    with pytest.raises(SystemExit):
        load_tool().main(argv)
    assert match in capsys.readouterr().err


def test_tool_outside_a_checkout_says_so(tmp_path):
    """The installed package's copy of tools/benchmark.py (its .mim) has no
    benchmarks/ beside it: one message says where the harness is."""
    copy = tmp_path / 'mmpoolformer' / '.mim' / 'tools'
    copy.mkdir(parents=True)
    shutil.copy(osp.join(TOOLS, 'benchmark.py'), copy)
    # as a user's: without the checkout on the path
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, str(copy / 'benchmark.py'),
                           '--runs', '1'], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert 'benchmarks/ folder of a checkout of mmpoolformer' in proc.stderr
    assert str(tmp_path / 'mmpoolformer' / '.mim') in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_harness_is_not_in_the_package():
    """setup.py's packages and the folders it copies into the package's
    .mim hold neither the harness nor the bundle script (the wheel's own
    contents: tests/test_packaging/test_wheel.py, slow)."""
    import ast

    from setuptools import find_packages
    with open(osp.join(REPO, 'setup.py')) as f:
        tree = ast.parse(f.read())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(
                node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
        if isinstance(node, ast.keyword) and node.arg == 'packages':
            found['include'] = node.value.keywords[0].value
    include = ast.literal_eval(found['include'])
    packages = find_packages(where=REPO, include=include)
    assert 'mmpoolformer' in packages
    assert not [p for p in packages if 'benchmark' in p]
    for item in ast.literal_eval(found['MIM_ITEMS']):
        for top, _, files in os.walk(osp.join(REPO, item)):
            assert not [f for f in files
                        if 'benchmark' in f and f != 'benchmark.py'
                        or f == 'gpu_bundle.sh'], top
    assert osp.isfile(osp.join(REPO, 'benchmarks', 'gpu_bundle.sh'))
    assert not osp.exists(osp.join(REPO, 'mmpoolformer', 'testing',
                                   'benchmark.py'))


def test_matrix_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip('a GPU is present')
    with pytest.raises(RuntimeError, match='sees no CUDA GPU'):
        bench.run_matrix(bench.settings('cuda'))


def test_mmdet_sizes_keep_the_ratio_within_the_scale():
    sizes = bench.mmdet_sizes()
    assert len(set(sizes)) == 10
    assert (800, 1088) in sizes and (800, 1216) in sizes  # 4:3, 3:2
    for (h, w), aspect in zip(sizes, bench.ASPECTS):
        assert h % 32 == 0 and w % 32 == 0
        assert max(h, w) <= 1344 and min(h, w) <= 800
        assert abs(w / h - aspect) < 0.1 * aspect
    assert len(bench.mmdet_sizes(4, (333, 200), 8)) == 4
    with pytest.raises(ValueError, match='sizes repeat'):
        bench.mmdet_sizes(10, (64, 32), 32)


def test_compile_plan_puts_detection_bf16_and_dynamic_first():
    plan = bench.compile_plan(bench.FAMILIES, list(bench.CASES))
    assert plan[:2] == [('unit', 'poolformer_s12', 'bf16', 'det2'),
                        ('dynamic', 'poolformer_s12', 'bf16', None)]
    assert [t[1] for t in plan[2:5]] == list(bench.FAMILIES[1:])
    units = [t for t in plan if t[0] == 'unit']
    assert len(units) == len(set(units)) == 4 * 2 * 2
    assert plan.index(('unit', 'caformer_s18', 'fp32', 'det2')) < plan.index(
        ('unit', 'poolformer_s12', 'bf16', 'seg4'))


def test_budget_guesses_from_what_it_measured():
    now = [0.]
    budget = bench.Budget(100., clock=lambda: now[0])
    unit = ('unit', 'caformer_s18', 'bf16', 'det2')
    assert budget.estimate(unit) == 2 * bench.FIRST_COMPILE_GUESS
    budget.record('poolformer_s12', 10.)
    budget.record('poolformer_s12', 8.)  # the dearer one counts
    assert budget.guess('poolformer_s12') == 10.
    assert budget.guess('caformer_s18') == 10.  # the dearest measured
    budget.record('caformer_s18', 30.)
    now[0] = 45.
    assert budget.left() == 55.
    assert budget.estimate(unit) == 60. > budget.left()
    assert budget.estimate(('dynamic', 'poolformer_s12')) == 25.


def test_settings_are_checked():
    with pytest.raises(ValueError, match='no setting'):
        bench.settings('cuda', runz=3)
    with pytest.raises(ValueError, match='are not measured'):
        bench.settings('cuda', families=('resnet50', ))
    assert bench.settings('cuda', runs=None).runs == 15
    quick = bench.settings('cpu', quick=True)
    assert quick.backend == 'aot_eager' and quick.compile_tasks == 3


@pytest.mark.integration
def test_backbone_check_needs_no_task_library():
    """``python benchmarks/backbones.py`` (a GPU machine's first check)
    builds and runs what it is asked for, in a fresh process with mmdet,
    mmseg and mmpretrain installed but not imported."""
    proc = run([sys.executable, osp.join(REPO, 'benchmarks', 'backbones.py'),
                '--only', 'PoolFormer:s12', 'CAFormer:s18', 'RandFormer:s12'])
    assert '3 backbones built and run on cpu' in proc.stdout
    imported = proc.stdout.split('OpenMMLab packages imported:')[1]
    assert not {'mmdet', 'mmseg', 'mmpretrain'} & set(
        imported.replace(',', ' ').split())


def test_backbone_check_fails_once_a_task_library_is_imported(capsys,
                                                              monkeypatch):
    import mmdet  # noqa: F401  (what the check must notice)
    monkeypatch.setattr(backbones, 'every_backbone', lambda *a: [])
    assert backbones.main(['--device', 'cpu']) == 1
    assert "needed ['mmdet'" in capsys.readouterr().err


class Recorder(torch.nn.Module):
    """Records the order of its calls in ``log``."""

    def __init__(self, name, log):
        super().__init__()
        self.name, self.log = name, log
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        self.log.append(self.name)
        return [x * self.w]


def test_cpu_comparison_rotates_the_order():
    log = []
    names = ['mmpoolformer', 'a', 'b']
    impls = {k: Recorder(k, log) for k in names}
    t = harness.time_all(impls, torch.randn(1, 1, 2, 2), runs=2, warmup=1)
    rounds = [log[i:i + 3] for i in range(0, len(log), 3)]
    # inference then training, 3 rounds each; ours by default last in the
    # first round, whose excess over its median is 'auto''s measurement
    assert rounds == [['a', 'b', 'mmpoolformer'],
                      ['b', 'mmpoolformer', 'a'],
                      ['mmpoolformer', 'a', 'b']] * 2
    assert {k for k in t if k[0] == 'first'} == {
        ('first', k, b) for k in names for b in (False, True)}
    assert all(t[(k, b)] > 0 for k in names for b in (False, True))
    # one torch.utils.benchmark Measurement per implementation and pass,
    # holding the timed runs (not the warm-up) and their median
    assert [(m.task_spec.sub_label, m.task_spec.description, len(m.times))
            for m in t.measurements] == [
        (k, d, 2) for k in names for d in ('forward', 'fwd+bwd')]
    for m in t.measurements:
        b = m.task_spec.description == 'fwd+bwd'
        assert m.median == t[(m.task_spec.sub_label, b)]
        assert m.median == pytest.approx(statistics.median(m.times), rel=1e-9)
        assert m.task_spec.num_threads == torch.get_num_threads()
    assert 'mmpoolformer' in harness.compare(t.measurements)


@pytest.mark.parametrize('pin,ran', [('fast', 'FFFF'), ('plain', 'OOOO')])
def test_cpu_comparison_says_what_auto_ran(monkeypatch, pin, ran):
    monkeypatch.setenv('MMPOOLFORMER_AUTO', pin)
    impls = {'mmpoolformer': PoolFormer(dict(depths=(1, 1, 1, 1),
                                             dims=(8, 8, 8, 8))),
             cpu.FORCED[0]: None, cpu.FORCED[1]: None}
    t = {('mmpoolformer', False): .5, (cpu.FORCED[0], False): .4,
         (cpu.FORCED[1], False): .8, ('mmpoolformer', True): 2.,
         (cpu.FORCED[0], True): 2.5, (cpu.FORCED[1], True): 2.,
         ('first', 'mmpoolformer', False): .9}
    line = cpu.auto_line(impls, t, (1, 3, 32, 32), torch.device('cpu'),
                          None)
    assert line == (
        f"`fused='auto'` ran, stages 0-3: inference {ran} (time 1.25x the "
        f"faster forced path's; its first call, which measured, 900 ms, "
        f"later ones 500 ms), training {ran} (time 1.00x the faster forced "
        f"path's)\n")


@pytest.mark.parametrize('flags,named', [
    ('fpu sse2 avx2 avx512f avx512bw', 'Xeon Test, AVX-512'),
    ('fpu sse2 avx avx2', 'Xeon Test, AVX2'), ('fpu sse2', 'Xeon Test')])
def test_cpu_comparison_names_the_processor(tmp_path, flags, named):
    info = tmp_path / 'cpuinfo'
    info.write_text(f'processor\t: 0\nmodel name\t: Xeon Test\n'
                    f'flags\t\t: {flags}\n')
    assert harness.cpu_name(str(info)) == named


def test_cpu_comparison_claims_no_measurement_under_autocast():
    """Autocast runs op by op without measuring: no first-call claim."""
    impls = {'mmpoolformer': PoolFormer(dict(depths=(1, 1, 1, 1),
                                             dims=(8, 8, 8, 8))),
             cpu.FORCED[0]: None, cpu.FORCED[1]: None}
    t = {(k, b): 1. for k in impls for b in (False, True)}
    t.update({('first', 'mmpoolformer', b): 2. for b in (False, True)})
    line = cpu.auto_line(impls, t, (1, 3, 32, 32), torch.device('cpu'),
                          'bf16')
    assert 'OOOO' in line and 'first call' not in line
