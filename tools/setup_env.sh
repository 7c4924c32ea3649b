#!/usr/bin/env bash
# Create (or reuse) one of the project's test environments, each a virtual
# environment over one end of the torch range that setup.py declares:
#
#   tools/setup_env.sh newest   .venv        torch 2.13.0 (the newest that
#                                            mmcv 2.1.0's ops compile for)
#   tools/setup_env.sh floor    .venv-floor  torch 2.0.1, numpy 1.26: what
#                                            OpenMMLab's mmcv 2.1.0 wheels
#                                            are built for
#   tools/setup_env.sh latest   .venv-latest torch 2.14.1, the newest
#                                            release, with mmcv-lite (no
#                                            ops: they do not compile for
#                                            it), for what needs no ops
#   tools/setup_env.sh deploy   .venv-deploy the floor's stack (its mmcv
#                                            wheel reused) with mmdeploy
#                                            1.3.1 and the onnx, protobuf
#                                            and onnxruntime it needs
#   tools/setup_env.sh deploy-newest
#                       .venv-deploy-newest  the deploy stack's pins and
#                                            mmdeploy over .venv's torch
#                                            2.13 and stack (built first),
#                                            installing nothing into .venv
#
# Idempotent: a stamp file records a finished install, keyed on this script
# and requirements.txt, so later runs return in a second.
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=${1:-newest}
PY=${PYTHON:-python3}
case "$STACK" in
    newest)
        VENV=${VENV:-.venv}
        pins=(torch==2.13.0 torchvision==0.28.0)
        # the dynamo ONNX exporter's (torch >= 2.5) own dependency
        extra=(onnxscript) ;;
    floor)
        VENV=${VENV:-.venv-floor}
        # torch 2.0/2.1 are built against numpy 1.x
        pins=(torch==2.0.1 torchvision==0.15.2 numpy==1.26.4)
        extra=() ;;
    deploy)
        VENV=${VENV:-.venv-deploy}
        # mmdeploy 1.3.1 (its last release) is tested up to torch 2.0 and
        # needs protobuf <= 3.20.2, which onnx 1.14 is the last to accept;
        # its ONNX Runtime ops library is built against onnxruntime 1.15.1.
        pins=(torch==2.0.1 torchvision==0.15.2 numpy==1.26.4)
        held=(onnx==1.14.1 onnxruntime==1.15.1 protobuf==3.20.2)
        extra=(mmdeploy==1.3.1) ;;
    deploy-newest)
        VENV=${VENV:-.venv-deploy-newest}
        base=${BASE_VENV:-.venv}
        # mmdeploy and the deploy stack's pins in a venv of their own, whose
        # site-packages come before the base's (torch 2.13, mmcv's ops,
        # mmdet, mmseg, this package), so that the base keeps the onnx and
        # protobuf of torch's dynamo exporter. onnxruntime 1.15.1 is built
        # against numpy 1.x. --no-deps: mmdeploy's other requirements are
        # the base's, but for these.
        pins=(numpy==1.26.4 onnx==1.14.1 onnxruntime==1.15.1 protobuf==3.20.2)
        extra=(mmdeploy==1.3.1 aenum multiprocess dill coloredlogs
               humanfriendly)
        overlay=1 ;;
    latest)
        VENV=${VENV:-.venv-latest}
        pins=(torch==2.14.1)
        extra=(onnxscript)
        # mmcv 2.1.0's ops need C++17, torch 2.14's headers C++20: the
        # ops-free mmcv-lite (a wheel on the index), so mmdet's and mmseg's
        # models, which import mmcv.ops, do not build here
        lite=1 ;;
    *)
        echo "usage: $0 [newest|floor|latest|deploy|deploy-newest]" >&2
        exit 2 ;;
esac
stamp="$VENV/.mmpoolformer-stamp"
key=$(cat tools/setup_env.sh requirements.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
    exit 0
fi
log() { echo "[setup $STACK] $*"; }
if [ -n "${overlay:-}" ]; then
    if [ ! -x "$base/bin/python" ]; then
        echo "$0 $STACK: no $base; build it first (tools/setup_env.sh newest)" >&2
        exit 1
    fi
    log "creating $VENV over $base (${pins[*]} ${extra[*]})"
    # the base's Python (a venv made from a venv gets its interpreter)
    [ -x "$VENV/bin/python" ] || "$base/bin/python" -m venv "$VENV"
    purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
    link="$("$VENV/bin/python" -c "$purelib")/zz_base.pth"
    # Installed while the base is off the path: pip neither sees nor
    # changes the base's packages.
    rm -f "$link"
    "$VENV/bin/python" -m pip --disable-pip-version-check -q install \
        --no-deps "${pins[@]}" "${extra[@]}"
    # addsitedir also runs the base's .pth files (its editable install)
    echo "import site; site.addsitedir('$(cd "$("$base/bin/python" -c "$purelib")" && pwd)')" \
        > "$link"
    echo "$key" > "$stamp"
    log "environment ready in $VENV"
    exit 0
fi
log "creating $VENV (${pins[*]}; first run: minutes, mostly compiling mmcv's ops; seconds after)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pins are installed first; held versions only constrain what follows
printf '%s\n' "${pins[@]}" ${held[@]+"${held[@]}"} > "$VENV/constraints.txt"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
pin=(-c "$VENV/constraints.txt")
"${pip[@]}" install --upgrade pip
# mmcv's setup.py and mmengine import pkg_resources (removed in setuptools
# 82); torch 2.13 needs setuptools >= 77.
"${pip[@]}" install 'setuptools>=77,<82' wheel
# The machine's find-links folder offers a CPU-only torch 2.13 that no
# torchvision build matches; take the index's torch/torchvision pair (runs
# fine without a GPU).
empty=$(mktemp -d)
PIP_FIND_LINKS="$empty" "${pip[@]}" install "${pin[@]}" "${pins[@]}"
rmdir "$empty"
"${pip[@]}" install "${pin[@]}" 'mmengine==0.10.7'
# No mmcv 2.1.0 wheel exists for torch 2.13, and PyPI has only its source:
# build it, with ops (RoIAlign and friends, which mmdet's and mmseg's model
# registries import), against this environment's torch. pip caches wheels
# by name and version only, so a wheel built over one torch would be
# reused over another and fail at `import mmcv.ops` (undefined symbol):
# each torch and Python gets a wheel folder of its own, and pip's cache is
# not used.
if [ -n "${lite:-}" ]; then
    "${pip[@]}" install "${pin[@]}" 'mmcv-lite==2.1.0'
elif ! "$VENV/bin/python" -c 'import mmcv.ops' 2>/dev/null; then
    tag=$("$VENV/bin/python" -c 'import sys, torch; print(f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}")')
    wheels="${XDG_CACHE_HOME:-$HOME/.cache}/mmpoolformer/mmcv-2.1.0-$tag"
    if ! ls "$wheels"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
        log "compiling mmcv 2.1.0 for $tag into $wheels (minutes; reused after)"
        # No debug info, and -O1 rather than Python's -O3: a test
        # environment's CPU ops need not be fast, and the compile, most of
        # a fresh set-up's time, takes about half as long.
        CFLAGS="-g0 -O1 ${CFLAGS:-}" MMCV_WITH_OPS=1 "${pip[@]}" wheel \
            --no-deps --no-build-isolation --no-cache-dir \
            -w "$wheels.part" 'mmcv==2.1.0'
        rm -rf "$wheels"
        mv "$wheels.part" "$wheels"
    fi
    "${pip[@]}" install "${pin[@]}" "$wheels"/mmcv-2.1.0-*.whl
fi
"${pip[@]}" install "${pin[@]}" -r requirements.txt ${extra[@]+"${extra[@]}"}
# openmim without its dependencies (see requirements.txt)
"${pip[@]}" install --no-deps 'openmim==0.3.9'
"${pip[@]}" install --no-deps --no-build-isolation -e .
echo "$key" > "$stamp"
log "environment ready in $VENV"
