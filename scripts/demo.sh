#!/usr/bin/env bash
# Set up, then compare FL, SL, SFL and PipeLearn on the embedded digits data (about a minute on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/splitpipe compare --out runs/compare "$@"
