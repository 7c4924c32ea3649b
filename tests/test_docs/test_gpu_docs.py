"""docs/benchmarks.md's GPU section: its one device command fits the device
tool (under 2000 characters, the bundle installed without an index), each
program it runs accepts its arguments, and its pytest run names exactly the
test files that carry the ``cuda`` marker."""
import glob
import os.path as osp
import re
import shlex
import sys

import pytest

from helpers.checkout import REPO, run
from helpers.readme import FENCE
from test_readme import check_command

DOC = osp.join(REPO, 'docs', 'benchmarks.md')


def gpu_blocks():
    with open(DOC) as f:
        text = f.read()
    start = text.index('### GPU matrix (issue 30)')
    end = text.index('\n### ', start + 1)
    return [(m.group(2), m.group(3)) for m in FENCE.finditer(text[start:end])]


def device_command():
    (command, ) = [code for lang, code in gpu_blocks() if lang == 'bash']
    return command.strip()


def parts(command):
    """The command's simple commands: split at ; && || and |, redirections
    and their targets dropped."""
    for piece in re.split(r';|&&|\|\||\|', command):
        tokens = shlex.split(piece)
        out = []
        skip = False
        for t in tokens:
            if skip:
                skip = False
            elif t in ('>', '2>&1', '>>'):
                skip = t != '2>&1'
            else:
                out.append(t)
        if out:
            yield out


def test_every_block_is_the_device_command():
    assert [lang for lang, _ in gpu_blocks()] == ['bash']


def test_device_command_fits_the_device_tool():
    command = device_command()
    assert '\n' not in command and len(command) < 2000
    first = next(parts(command))
    assert first[:4] == ['python3', '-m', 'pip', 'install']
    assert {'--no-index', '--no-deps'} <= set(first)
    assert first[-1] == '.whl/*.whl'
    assert '$OUT' in command


NO_BUILD = ('import sys\n'
            'from mmpoolformer.testing import benchmark as bench\n'
            'bench.every_backbone = lambda *a: []\n'
            'sys.exit(bench.main(sys.argv[1:]))\n')


def cuda_test_files():
    found = []
    for path in glob.glob(osp.join(REPO, 'tests', '**', 'test_*.py'),
                          recursive=True):
        with open(path) as f:
            text = f.read()
        if re.search(r'^from helpers\.devices import|pytest\.mark\.cuda',
                     text, re.M):
            found.append(osp.relpath(path, REPO))
    return sorted(found)


def test_device_command_runs_what_it_should(monkeypatch):
    seen = set()
    for tokens in parts(device_command()):
        while tokens[0] == 'timeout':
            tokens = tokens[2:]
        if tokens[:4] == ['python3', '-m', 'pip', 'install']:
            continue  # test_device_command_fits_the_device_tool
        if tokens[:3] == ['python3', '-m', 'pytest']:
            files = sorted(t for t in tokens if t.startswith('tests/'))
            assert files == cuda_test_files()
            assert tokens[tokens.index('-m', 3) + 1] == 'cuda'
            seen.add('pytest')
        elif tokens[:3] == ['python3', '-m', 'mmpoolformer.testing.benchmark']:
            # its arguments, in a fresh process (the check reads which
            # OpenMMLab packages are imported), building nothing
            proc = run([sys.executable, '-c', NO_BUILD] + tokens[3:],
                       cwd=REPO, check=False)
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert '0 backbones built and run on cuda' in proc.stdout
            seen.add('backbones')
        elif tokens[:2] == ['python3', 'tools/benchmark.py']:
            check_command(tokens, monkeypatch)
            assert tokens[2:4] == ['--matrix', 'gpu']
            seen.add('benchmark')
        elif tokens[0] in ('export', 'exit', 'nvidia-smi', 'echo', 'tail'):
            continue
        else:
            pytest.fail(f'unexpected command {tokens}')
    assert seen == {'pytest', 'backbones', 'benchmark'}


def test_cuda_test_files_import_without_openmmlab_task_libraries():
    """The GPU machine has mmengine and mmcv (the bundle) but no mmdet,
    mmseg or mmpretrain: the device command's test files import without
    them (importing one is an error here)."""
    blocker = ('import sys\n'
               'class Block:\n'
               '    def find_spec(self, name, path=None, target=None):\n'
               '        if name.split(".")[0] in ("mmdet", "mmseg", '
               '"mmpretrain"):\n'
               '            raise ImportError("blocked: " + name)\n'
               'sys.meta_path.insert(0, Block())\n'
               'import importlib.util, os\n'
               'for path in sys.argv[1:]:\n'
               '    spec = importlib.util.spec_from_file_location('
               'os.path.basename(path)[:-3], path)\n'
               '    spec.loader.exec_module('
               'importlib.util.module_from_spec(spec))\n'
               'print("imported", len(sys.argv) - 1)\n')
    proc = run([sys.executable, '-c', blocker] + cuda_test_files(), cwd=REPO)
    assert f'imported {len(cuda_test_files())}' in proc.stdout
