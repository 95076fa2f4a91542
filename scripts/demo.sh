#!/usr/bin/env bash
# Set up, then compare FL, SL, SFL and PipeLearn in the case PipeLearn exists for: phone-class
# devices (0.05 of this host), a GPU-class server (20x), 4g links, VGG-5 on the embedded digits.
# Timing comes from a committed profile (configs/demo.toml), so the table is the same on every
# machine; about 30 s of CPU after set-up. Flags after the script's name override the config.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The model is tiny: one torch thread is as fast, and two spin-wait on a busy machine.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv/bin/splitpipe compare configs/demo.toml --out runs/demo "$@"
