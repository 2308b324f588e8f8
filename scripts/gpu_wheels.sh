#!/usr/bin/env bash
# Fetch, here, the wheels that scripts/gpu_amortise.sh installs on a lent GPU machine, whose image lacks them and
# reaches no registry. Versions are those of this checkout's .venv, so the device runs what the tests ran; the
# platform is the device's (x86-64, CPython 3.12). Run it before the first device call, so that no device time
# goes on it, then carry .whl:
#   bash scripts/gpu_wheels.sh            # -> .whl/*.whl (about 5 MiB), ignored by git
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEST=${DEST:-.whl}
# What the device image lacks (its package list: the device tool's KINDS.md); lightning is there, but at its own
# version, so ours travels too.
PACKAGES=${PACKAGES:-"kornia kornia_rs jsonargparse docstring_parser typeshed_client omegaconf lightning
    lightning-utilities"}
pins=()
for name in $PACKAGES; do
    version=$($PY -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
    [ -n "$version" ] || { echo "gpu_wheels.sh: '$name' is not installed in $PY (run make setup)" >&2; exit 2; }
    pins+=("$name==$version")
done
mkdir -p "$DEST"
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$DEST" "${pins[@]}"
echo "gpu_wheels.sh: ${#pins[@]} wheels in $DEST ($(du -sh "$DEST" | cut -f1)): ${pins[*]}"
