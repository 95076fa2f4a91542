"""bench/fuzz_wire.py with a small N: no malformed frame escapes either wire's decoder or ends a live node's stream."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_fuzz_wire_small_run_has_no_crash_and_no_lost_message() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz_wire.py"), "--cases", "1500",
                          "--live-cases", "500", "--seed", "7"], capture_output=True, text=True, env=env,
                         timeout=240, cwd=ROOT)
    summary = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert any(line.startswith("cases 1500 ") and "crashes 0; lost sentinels 0" in line for line in summary)
    assert any("live node: 500 cases over 1 streams" in line and "0 problems" in line for line in summary)
    assert any(line.startswith("socket cases 1500 ") and "crashes 0; lost sentinels 0" in line for line in summary)
    assert any("socket live node: 500 cases over 1 connection" in line and "0 problems" in line for line in summary)
