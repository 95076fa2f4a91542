#!/usr/bin/env bash
# Creates .venv (once) and installs splitpipe into it with the test tools. Sourced by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch is pinned to the reference CPU build first so that no newer (CUDA) build is pulled in.
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import splitpipe, torch; print('splitpipe', splitpipe.__version__, 'torch', torch.__version__)"
