#!/usr/bin/env bash
# Gather the pure-Python dependencies for an offline CUDA machine: one folder
# of wheels (default .whl/, git-ignored) to copy there with the checkout:
#
#   benchmarks/gpu_bundle.sh [DIR]
#
# For a machine that has Python 3.12, torch with CUDA, timm, numpy, opencv,
# pyyaml, rich, pillow and packaging but no
# OpenMMLab and no package index. The bundle is what `import mmpoolformer`
# and tools/benchmark.py need besides those:
#   - mmengine 0.10.7 and the ops-free mmcv 2.1.0, `mmcv-lite` (what mmcv's
#     own build makes with MMCV_WITH_OPS=0): the backbones use mmcv.cnn's
#     layer builders only, and mmdet/mmseg/mmpretrain are not needed;
#   - their pure-Python needs: addict, termcolor, yapf and platformdirs;
#   - mmpoolformer itself, built from this checkout.
# Every wheel is pure Python (py3-none-any). Install there with
#   python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
# and run from the checkout with PYTHONPATH=$PWD:/tmp/site (docs/benchmarks.md).
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-$HERE/.whl}
PYTHON=${PYTHON:-python3}
# pinned: one version of each, and only wheels (nothing is built there)
PINS=(mmengine==0.10.7 mmcv-lite==2.1.0 addict==2.4.0 termcolor==3.3.0
      yapf==0.43.0 platformdirs==4.14.9)

mkdir -p "$DIR"
rm -f "$DIR"/*.whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d "$DIR" "${PINS[@]}"
# setuptools builds in the checkout's build/: a stale one would carry
# files deleted since into the wheel
rm -rf "$HERE/build"
"$PYTHON" -m pip wheel -q --no-deps -w "$DIR" "$HERE"
rm -rf "$HERE/build"
# a wheel that is not pure Python would not run on the other interpreter
for whl in "$DIR"/*.whl; do
    case $whl in
        *-py3-none-any.whl|*-py2.py3-none-any.whl) ;;
        *) echo "gpu_bundle.sh: $whl is not a pure-Python wheel" >&2; exit 1;;
    esac
done
ls -1 "$DIR"
du -sh "$DIR"
