"""The package, its tools and configs stay Python 3.8 code (setup.py's
python_requires; OpenMMLab's get-started guide creates 3.8 environments),
though the suite runs on 3.11: vermin checks syntax and standard-library
use against 3.8, and where a 3.8 interpreter is on the machine (pyenv's),
it compiles every file."""
import glob
import os.path as osp
import subprocess
import sys

import pytest

from helpers.checkout import REPO

SOURCES = ['mmpoolformer', 'tools', 'configs', 'setup.py']


def test_vermin_finds_nothing_newer_than_38():
    vermin = osp.join(osp.dirname(sys.executable), 'vermin')
    out = subprocess.run(
        [vermin, '-t=3.8-', '--violations',
         '--no-tips', '--eval-annotations', '--backport', 'typing',
         *SOURCES], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def python38():
    """A Python 3.8 interpreter that runs (pyenv's shims may not)."""
    for path in sorted(glob.glob(osp.expanduser(
            '~/.pyenv/versions/3.8*/bin/python3.8'))) + ['python3.8']:
        try:
            subprocess.run([path, '-c', 'pass'], check=True,
                           capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            continue
        return path
    return None


@pytest.mark.skipif(python38() is None, reason='no Python 3.8 here')
def test_every_file_compiles_under_38(tmp_path):
    files = [f for src in SOURCES for f in (
        glob.glob(osp.join(REPO, src, '**', '*.py'), recursive=True)
        if osp.isdir(osp.join(REPO, src)) else [osp.join(REPO, src)])]
    script = ('import sys, py_compile\n'
              'for f in sys.argv[1:]:\n'
              '    py_compile.compile(f, cfile="out.pyc", doraise=True)\n')
    out = subprocess.run([python38(), '-c', script, *files],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
