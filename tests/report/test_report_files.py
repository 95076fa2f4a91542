"""report.json, metrics.csv, compare.csv and compare.png on disk."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from splitpipe.report import summarize, write_compare, write_run
from splitpipe.report.accuracy import time_to_accuracy
from splitpipe.report.files import compare_rows
from splitpipe.span import Span

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _epoch(epoch: int, time_s: float, server_idle: float, accuracy: float) -> dict:
    return {
        "epoch": epoch,
        "time_s": time_s,
        "busy_s": {"server": time_s - server_idle, "device0->server": 0.5},
        "idle_s": {
            "server": server_idle,
            "device1": 0.25 * (epoch + 1),
            "device0": 0.5,
        },
        "bytes": {"server->device0": 2048, "device0->server": 4096},
        "throughput_Bps": 1000.0 / time_s,
        "bound_s": 1.5,
        "efficiency": 1.5 / time_s,
        "train_loss": 2.0 / (epoch + 1),
        "test_accuracy": accuracy,
    }


def _report(technique: str = "pipelearn", slow: float = 1.0) -> dict:
    return {
        "technique": technique,
        "engine": "predict",
        "timing": "deterministic",
        "model": "vgg5",
        "dataset": "digits",
        "devices": 2,
        "network": "4g",
        "roles": {"server": "server", "device0": "device", "device1": "device"},
        "plan": {"micro_batches": 4, "batch_size": 32},
        "epochs": [
            _epoch(0, 3.0 * slow, 1.0 * slow, 0.5),
            _epoch(1, 2.0 * slow, 0.5 * slow, 0.75),
        ],
    }


def _spans() -> list[Span]:
    return [
        Span("device0", "forward", 0.0, 1.0, label="F0.0"),
        Span("device0->server", "upload", 1.0, 1.5, bytes=4096),
        Span("server", "forward", 1.5, 2.0),
        Span("server", "backward", 2.0, 2.8),
        Span("server->device0", "download", 2.8, 3.0, bytes=2048),
        Span("device0", "backward", 3.0, 3.5, epoch=0),
        Span("device0", "forward", 0.0, 1.0, epoch=1),
    ]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_write_run_writes_the_four_files(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "run"
    paths = write_run(out, _report(), _spans())
    assert paths == [out / "report.json", out / "metrics.csv", out / "trace.json", out / "timeline.png"]
    assert all(path.stat().st_size > 0 for path in paths)
    assert (out / "timeline.png").read_bytes().startswith(PNG_MAGIC)


def test_report_json_round_trips_in_key_order(tmp_path: Path) -> None:
    report = _report()
    write_run(tmp_path, report, _spans())
    loaded = json.loads((tmp_path / "report.json").read_text())
    assert loaded == report
    assert list(loaded) == list(report)
    assert list(loaded["epochs"][0]["idle_s"]) == ["server", "device1", "device0"]


def test_metrics_csv_has_one_row_per_epoch_with_values(tmp_path: Path) -> None:
    write_run(tmp_path, _report(), _spans())
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == [
        "epoch", "time_s", "bound_s", "efficiency", "throughput_Bps", "train_loss",
        "test_accuracy", "idle_s:device0", "idle_s:device1", "idle_s:server",
        "bytes:device0->server", "bytes:server->device0",
    ]  # fmt: skip
    rows = _rows(tmp_path / "metrics.csv")
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert float(rows[0]["time_s"]) == 3.0
    assert float(rows[1]["efficiency"]) == 0.75
    assert float(rows[1]["idle_s:device1"]) == 0.5
    assert int(rows[0]["bytes:device0->server"]) == 4096


def test_metrics_csv_adds_predicted_time_and_blanks_missing_values(
    tmp_path: Path,
) -> None:
    report = _report()
    report["epochs"][1]["predicted_time_s"] = 1.9
    report["epochs"][0]["test_accuracy"] = None
    write_run(tmp_path, report, [])
    rows = _rows(tmp_path / "metrics.csv")
    assert [row["predicted_time_s"] for row in rows] == ["", "1.9"]
    assert rows[0]["test_accuracy"] == ""
    assert not (tmp_path / "timeline.png").exists()


def test_write_run_names_every_missing_key(tmp_path: Path) -> None:
    report = _report()
    del report["epochs"][0]["bound_s"]
    del report["epochs"][1]["idle_s"]
    with pytest.raises(
        ValueError, match=r"epochs\[0\] lacks bound_s; epochs\[1\] lacks idle_s"
    ):
        write_run(tmp_path, report, _spans())
    assert not (tmp_path / "report.json").exists()


def test_summarize_means_over_epochs_and_last_accuracy() -> None:
    row = summarize(_report())
    assert row["epoch_time_s"] == pytest.approx(2.5)
    assert row["server_idle_s"] == pytest.approx(0.75)
    # device0 idles 0.5 each epoch, device1 0.25 then 0.5: per-epoch means 0.375, 0.5.
    assert row["device_idle_s"] == pytest.approx(0.4375)
    assert row["efficiency"] == pytest.approx((0.5 + 0.75) / 2)
    assert row["test_accuracy"] == 0.75
    assert row["train_loss"] == 1.0


def test_summarize_without_server_gives_nan() -> None:
    report = _report("fl")
    for epoch in report["epochs"]:
        del epoch["idle_s"]["server"]
    assert math.isnan(summarize(report)["server_idle_s"])


def test_write_compare_writes_csv_and_png(tmp_path: Path) -> None:
    reports = {"pipelearn": _report(), "sfl": _report("sfl", slow=2.0)}
    paths = write_compare(tmp_path, reports)
    assert paths == [tmp_path / "compare.csv", tmp_path / "compare.png"]
    rows = _rows(tmp_path / "compare.csv")
    assert [row["technique"] for row in rows] == ["pipelearn", "sfl"]
    assert float(rows[1]["epoch_time_s"]) == pytest.approx(5.0)
    assert float(rows[1]["server_idle_s"]) == pytest.approx(1.5)
    png = (tmp_path / "compare.png").read_bytes()
    assert len(png) > 1000 and png.startswith(PNG_MAGIC)


def test_write_compare_refuses_no_reports(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one report"):
        write_compare(tmp_path, {})


def test_time_to_accuracy_is_the_clock_at_the_first_epoch_that_reaches_it() -> None:
    report = _report()  # epochs of 3 s (accuracy 0.5) and 2 s (0.75)
    assert time_to_accuracy(report, 0.5) == 3.0
    assert time_to_accuracy(report, 0.6) == 5.0
    assert math.isnan(time_to_accuracy(report, 0.9))
    report["epochs"][0]["test_accuracy"] = None
    assert time_to_accuracy(report, 0.5) == 5.0
    with pytest.raises(ValueError, match=r"target accuracy must be in \(0, 1\].*got 90"):
        time_to_accuracy(report, 90)


def test_write_compare_adds_the_time_to_a_target_accuracy(tmp_path: Path) -> None:
    reports = {"pipelearn": _report(), "sfl": _report("sfl", slow=2.0)}
    write_compare(tmp_path, reports, target=0.7)
    rows = _rows(tmp_path / "compare.csv")
    assert [(row["target_accuracy"], row["time_to_accuracy_s"]) for row in rows] == [("0.7", "5.0"), ("0.7", "10.0")]
    write_compare(tmp_path, reports, target=0.8)
    assert [row["time_to_accuracy_s"] for row in _rows(tmp_path / "compare.csv")] == ["", ""]
    assert compare_rows(reports)["sfl"].keys() == summarize(reports["sfl"]).keys()
