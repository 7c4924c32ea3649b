"""The checkout the tests run from (importing this makes its ``benchmarks``
folder importable), and one way to run its tools in a child process."""
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional

#: The checkout the tests run from.
REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOLS = osp.join(REPO, 'tools')
# the benchmark harness is the checkout's, not the package's; appended, so
# that an installed mmpoolformer still comes first where there is one
if REPO not in sys.path:
    sys.path.append(REPO)


def tool(name: str, *args: str) -> List[str]:
    """The command running ``tools/NAME`` (a Python or bash script) with
    ``args``, under this interpreter."""
    runner = ['bash'] if name.endswith('.sh') else [sys.executable]
    return runner + [osp.join(TOOLS, name), *map(str, args)]


def checkout_env(**extra: str) -> Dict[str, str]:
    """``os.environ`` for a child process that imports this checkout's
    package (whichever one is installed) and the tests' helpers, with
    ``PYTHON`` (which the dist scripts run) this interpreter; ``extra``
    on top."""
    path = os.pathsep.join([osp.join(REPO, 'tests'), REPO])
    return dict(os.environ, PYTHONPATH=path, PYTHON=sys.executable, **extra)


def run(cmd: List[str], cwd: Optional[str] = None,
        env: Optional[Dict[str, str]] = None, check: bool = True,
        timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run ``cmd`` in :func:`checkout_env` (plus ``env``) and capture its
    output as text. With ``check``, a non-zero exit fails with the ends of
    its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=checkout_env(**(env or {})),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{cmd} exited with {proc.returncode}\n'
            f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return proc


def log(cmd: List[str], cwd: Optional[str] = None,
        env: Optional[Dict[str, str]] = None) -> str:
    """All that :func:`run` ``cmd`` printed."""
    proc = run(cmd, cwd, env)
    return proc.stdout + proc.stderr
