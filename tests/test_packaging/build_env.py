"""Helpers of the packaging tests: a copy of the checkout to build from,
and fresh virtual environments that see this environment's OpenMMLab stack
without holding it."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig

from helpers.checkout import REPO

# What a build must not see: outputs of earlier builds and runs.
NOT_SOURCE = ('.git', '.venv*', '.whl', '.gl', 'build', 'dist', '*.egg-info',
              '__pycache__', '*.pyc', '.mim', 'data', 'work_dirs', 'outputs',
              '.pytest_cache')


def run(cmd, cwd, env=None, timeout=600):
    """Run ``cmd``; fail with its output unless it exits 0. Returns stdout
    and stderr together. Without ``env``: this environment less
    ``PYTHONPATH``, so that a checkout never shadows what is installed."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env = dict(env, PIP_DISABLE_PIP_VERSION_CHECK='1')
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{cmd} failed:\n{out[-6000:]}'
    return out


def copy_checkout(dst):
    """The checkout's sources (no build outputs, data or venvs) at
    ``dst``."""
    shutil.copytree(REPO, dst, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    return dst


def stack_venv(path):
    """A virtual environment at ``path`` whose interpreter also sees this
    environment's site-packages (the OpenMMLab stack, pip, openmim) after
    its own. ``venv --system-site-packages`` would show the base
    interpreter's packages instead, since this one is itself a venv.
    Returns its python."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip',
                    str(path)], check=True)
    py = osp.join(path, 'bin', 'python')
    site = subprocess.run(
        [py, '-c', 'import sysconfig; print(sysconfig.get_paths()'
         "['purelib'])"], capture_output=True, text=True,
        check=True).stdout.strip()
    ours = {sysconfig.get_paths()[k] for k in ('purelib', 'platlib')}
    with open(osp.join(site, 'openmmlab_stack.pth'), 'w') as f:
        f.write('\n'.join(sorted(ours)) + '\n')
    return py


def installed(pip_output):
    """The distributions a ``pip install`` run says it installed."""
    for line in pip_output.splitlines():
        if line.startswith('Successfully installed '):
            return line.split()[2:]
    return []


def json_line(output):
    """The last line of ``output`` that is a JSON object."""
    return json.loads([line for line in output.splitlines()
                       if line.startswith('{')][-1])
