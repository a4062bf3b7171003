#!/usr/bin/env bash
# The oldest versions pyproject.toml declares, tested (as imbalanced-learn's
# and scikit-learn-contrib projects' minimum-dependencies runs do): a fresh
# virtual environment with the latest patch release of each declared minor
# version of numpy, scipy, scikit-learn, threadpoolctl and xxhash (">=1.25" becomes
# "~=1.25.0"), then `pip install .`, the main job, and the parity and
# compatibility tests, which know which scikit-learn they compare with.
#   bash tools/min_deps.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

pins="$(python3 - "$root/pyproject.toml" <<'PY'
import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
for dep in deps:
    match = re.fullmatch(r"(numpy|scipy|scikit-learn|threadpoolctl|xxhash)>=(\d+)\.(\d+)", dep)
    if match:
        name, major, minor = match.groups()
        print(f"{name}~={major}.{minor}.0")
PY
)"
echo "oldest declared versions: $(echo $pins)"
[ "$(echo "$pins" | wc -l)" -eq 5 ] || { echo "expected 5 floors in pyproject.toml" >&2; exit 1; }

python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
python -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086
pip install --quiet "$root" $pins pytest
python -c "import numpy, scipy, sklearn, threadpoolctl, xxhash; print('numpy', numpy.__version__, \
'scipy', scipy.__version__, 'scikit-learn', sklearn.__version__, \
'threadpoolctl', threadpoolctl.__version__, 'xxhash', xxhash.VERSION)"
cd "$work"   # outside the source tree: the installed package is tested
python -m cnn_bp
python -m pytest -p no:cacheprovider --import-mode=importlib -q --rootdir "$root" \
    -c "$root/pyproject.toml" "$root/tests/test_sklearn_parity.py" \
    "$root/tests/test_sklearn_compat.py"
