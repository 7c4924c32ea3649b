"""The suite's own settings (pytest.ini) that CI depends on."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WRITER = '''
def test_passes(tmp_path):
    (tmp_path / 'ckpt.pth').write_bytes(bytes(1 << 20))

def test_fails(tmp_path):
    (tmp_path / 'ckpt.pth').write_bytes(bytes(1 << 20))
    assert False
'''


def _left(temproot, select):
    """Files left under pytest's temporary root by a run of ``select``."""
    env = dict(os.environ, PYTEST_DEBUG_TEMPROOT=str(temproot))
    subprocess.run(
        [sys.executable, '-m', 'pytest', '-c', str(ROOT / 'pytest.ini'),
         '-p', 'no:cacheprovider', '-q', '-k', select,
         str(temproot.parent / 'test_writer.py')],
        env=env, cwd=temproot.parent, capture_output=True, timeout=120)
    return sorted(p.name for p in temproot.rglob('*.pth'))


def test_passing_tests_leave_no_files(tmp_path):
    """`make test` writes tens of GB of checkpoints into pytest's folders;
    CI's disk filled while they were all kept. A passing test's folder is
    removed, a failing one's is kept to look at."""
    (tmp_path / 'test_writer.py').write_text(WRITER)
    temproot = tmp_path / 'temp'
    temproot.mkdir()
    assert _left(temproot, 'passes') == []
    assert _left(temproot, 'fails') == ['ckpt.pth']
