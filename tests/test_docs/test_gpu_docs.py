"""docs/benchmarks.md's GPU section: its commands run what they should
from a checkout (the backbone check, the matrix, the model tests that
carry the ``cuda`` marker, exactly those), each program accepts its
arguments, and the offline install takes the bundle without an index."""
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
    start = text.index('### Running it on a GPU machine')
    end = text.index('\n## ', start + 1)
    return [(m.group(2), m.group(3)) for m in FENCE.finditer(text[start:end])]


def gpu_commands():
    """The section's commands, one a line."""
    for lang, code in gpu_blocks():
        for line in code.strip().splitlines():
            yield line


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


def test_every_block_is_shell():
    assert [lang for lang, _ in gpu_blocks()] == ['bash', 'bash']


def test_offline_install_needs_no_index():
    """The bundle script writes the folder the install reads, and the
    install takes it without an index or dependency resolution."""
    commands = [next(parts(c)) for c in gpu_commands()]
    (bundle, ) = [c for c in commands if c[0] == 'benchmarks/gpu_bundle.sh']
    (install, ) = [c for c in commands if c[1:4] == ['-m', 'pip', 'install']]
    assert {'--no-index', '--no-deps'} <= set(install)
    assert install[-1] == f'{bundle[1]}/*.whl'


NO_BUILD = ('import sys\n'
            'sys.path.insert(0, sys.argv.pop(1))\n'
            'from benchmarks import backbones\n'
            'backbones.every_backbone = lambda *a: []\n'
            'sys.exit(backbones.main(sys.argv[1:]))\n')


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


def test_commands_run_what_they_should(monkeypatch):
    seen = set()
    for command in gpu_commands():
        for tokens in parts(command):
            while '=' in tokens[0] and not tokens[0].startswith('-'):
                tokens = tokens[1:]  # PYTHONPATH=...
            if tokens[0] == 'python3':
                tokens = ['python'] + tokens[1:]
            if tokens[:4] == ['python', '-m', 'pip', 'install']:
                seen.add('install')  # test_offline_install_needs_no_index
            elif tokens[:3] == ['python', '-m', 'pytest']:
                files = sorted(t for t in tokens if t.startswith('tests/'))
                assert files == cuda_test_files()
                assert tokens[tokens.index('-m', 3) + 1] == 'cuda'
                seen.add('pytest')
            elif tokens[:2] == ['python', 'benchmarks/backbones.py']:
                # its arguments, in a fresh process (the check reads which
                # OpenMMLab packages are imported), building nothing
                proc = run([sys.executable, '-c', NO_BUILD, REPO] +
                           tokens[2:], cwd=REPO, check=False)
                assert proc.returncode == 0, proc.stderr[-2000:]
                assert '0 backbones built and run on cuda' in proc.stdout
                seen.add('backbones')
            elif tokens[:2] == ['python', 'tools/benchmark.py']:
                check_command(tokens, monkeypatch)
                assert tokens[2:4] == ['--matrix', 'gpu']
                seen.add('benchmark')
            elif tokens[0] == 'benchmarks/gpu_bundle.sh':
                check_command(tokens, monkeypatch)
                seen.add('bundle')
            else:
                pytest.fail(f'unexpected command {tokens}')
    assert seen == {'install', 'pytest', 'backbones', 'benchmark', 'bundle'}


@pytest.mark.integration
def test_cuda_test_files_import_without_openmmlab_task_libraries():
    """A GPU machine may have mmengine and mmcv (the bundle) but no mmdet,
    mmseg or mmpretrain: the section's test files import without them
    (importing one is an error here)."""
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
