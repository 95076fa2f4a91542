"""Bad input found at the edge, before any work: one line naming the key or flag, a non-zero exit, no training."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from splitpipe.cli import main


def _npz(path: Path, labels: np.ndarray) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (len(labels), 8, 8), dtype=np.uint8), y=labels)
    return str(path)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    labels = np.arange(200) % 10
    good = _npz(tmp_path / "good.npz", labels)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(Path(good).read_bytes()[:2000])
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{corrupt")
    return {"huge": _npz(tmp_path / "huge.npz", labels * 10**6), "sparse": _npz(tmp_path / "sparse.npz", labels * 1000),
            "truncated": str(truncated), "corrupt": str(corrupt)}


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


CASES = {
    "labels x 10^6": (["run", "--dataset", "npz:{huge}"], "9000001 classes; the limit is 100000"),
    "sparse labels": (["run", "--dataset", "npz:{sparse}"], "label 9000 but only 10 distinct labels"),
    "truncated npz": (["run", "--dataset", "npz:{truncated}"], "cannot read npz file"),
    "batch over shard": (["run", "--batch-size", "1000000"], "batch-size 1000000 exceeds the smallest shard"),
    "server device": (["run", "--server-device", "tpu9"], "--server-device 'tpu9'"),
    "launch corrupt profile": (["launch", "--devices", "2", "--profile", "{corrupt}"], "{corrupt}"),
    "launch huge labels": (["launch", "--devices", "2", "--dataset", "npz:{huge}"], "9000001 classes"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_a_nonzero_exit_before_training(case: str, files, capsys) -> None:
    argv, named = CASES[case]
    try:
        code = main([argv[0], "--epochs", "1", "--no-progress", *(a.format(**files) for a in argv[1:])])
    except SystemExit as exit_:   # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert named.format(**files) in err
    assert "epoch" not in out


def test_a_taken_port_is_one_line(tmp_path: Path, taken_port: int, capfd) -> None:
    (tmp_path / "run.toml").write_text("epochs = 1\ndevices = 2\n")
    (tmp_path / "secret").write_text("s3cret")
    code = main(["node", "--role", "server", "--listen", f"127.0.0.1:{taken_port}", "--secret-file",
                 str(tmp_path / "secret"), "--config", str(tmp_path / "run.toml"), "--no-progress"])
    err = capfd.readouterr().err.strip()
    assert code != 0
    assert err.splitlines() == [err.splitlines()[-1]] and f"port {taken_port} is taken" in err, err
