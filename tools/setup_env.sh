#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv with the pinned
# OpenMMLab stack. Idempotent: a stamp file records a finished install, keyed on
# this script and requirements.txt, so later runs return in a second.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.mmpoolformer-stamp"
key=$(cat tools/setup_env.sh requirements.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
    exit 0
fi
echo "[setup] creating $VENV (first run: 20 to 35 minutes on a fresh machine, mostly compiling mmcv's ops; seconds after)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
# mmcv's setup.py and mmengine import pkg_resources (removed in setuptools 82);
# torch 2.13 needs setuptools >= 77.
"${pip[@]}" install 'setuptools>=77,<82' wheel
# The machine's find-links folder offers a CPU-only torch that no torchvision
# build matches; take the index's torch/torchvision pair (runs fine without a GPU).
empty=$(mktemp -d)
PIP_FIND_LINKS="$empty" "${pip[@]}" install torch==2.13.0 torchvision==0.28.0
rmdir "$empty"
"${pip[@]}" install 'mmengine==0.10.7'
# No mmcv 2.1.0 wheel exists for torch 2.13: build it (with ops, for RoIAlign and
# friends) against the torch just installed. pip caches the wheel afterwards.
if ! "$VENV/bin/python" -c 'import mmcv.ops' 2>/dev/null; then
    echo "[setup] installing mmcv 2.1.0 (compiled on first install: most of the set-up's 20 to 35 minutes; pip reuses the cached wheel after)"
    MMCV_WITH_OPS=1 "${pip[@]}" install --no-build-isolation 'mmcv==2.1.0'
fi
"${pip[@]}" install -r requirements.txt
# openmim without its dependencies (see requirements.txt)
"${pip[@]}" install --no-deps 'openmim==0.3.9'
"${pip[@]}" install --no-deps --no-build-isolation -e .
echo "$key" > "$stamp"
echo "[setup] environment ready in $VENV"
