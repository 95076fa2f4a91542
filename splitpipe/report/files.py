"""Run artefacts on disk: report.json, metrics.csv, compare.csv, the plots beside them, and reading them back."""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from splitpipe.report.accuracy import accuracy_curve, check_target, time_to_accuracy
from splitpipe.report.chrome_trace import read_spans, write_trace
from splitpipe.report.compare_plot import plot_compare
from splitpipe.report.timeline import plot_timeline
from splitpipe.span import Span

__all__: list[str] = []

#: The first columns of metrics.csv; per-node idle and per-link bytes follow.
METRICS_COLUMNS = (
    "epoch",
    "time_s",
    "bound_s",
    "efficiency",
    "throughput_Bps",
    "train_loss",
    "test_accuracy",
)

#: The keys of `summarize`, in the column order of compare.csv and the tables.
SUMMARY_COLUMNS = (
    "epoch_time_s",
    "server_idle_s",
    "device_idle_s",
    "throughput_Bps",
    "efficiency",
    "test_accuracy",
    "train_loss",
)
#: compare.csv's columns after SUMMARY_COLUMNS when a target accuracy is given.
TARGET_COLUMNS = ("target_accuracy", "time_to_accuracy_s")

#: Roles (report["roles"]) of the nodes that serve the data owners, and of the data owners.
SERVER_SIDE = ("server", "compute", "worker")
DATA_SIDE = ("device", "central")


def write_run(
    out_dir: str | Path, report: dict[str, Any], spans: Sequence[Span]
) -> list[Path]:
    """Write report.json, metrics.csv, trace.json and (when there are spans) timeline.png into `out_dir`."""
    out = Path(out_dir)
    epochs = checked_epochs(report)
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "report.json", out / "metrics.csv"
    # Serialise first, so a value json cannot encode leaves no half-written file.
    text = json.dumps(report, indent=2, default=_jsonable)
    json_path.write_text(text + "\n", encoding="utf-8")
    columns = metrics_columns(epochs)
    _write_csv(
        csv_path, columns, ([_metrics_cell(e, c) for c in columns] for e in epochs)
    )
    paths = [json_path, csv_path, write_trace(out / "trace.json", report, spans)]
    if spans:
        png_path = out / "timeline.png"
        plot_timeline(spans, png_path, title=str(report.get("technique", "")), events=report.get("events", []))
        paths.append(png_path)
    return paths


def write_compare(
    out_dir: str | Path, reports: Mapping[str, dict[str, Any]], target: float | None = None
) -> list[Path]:
    """Write compare.csv (one row per technique, see `compare_rows`) and compare.png into `out_dir`."""
    rows = compare_rows(reports, target)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "compare.csv", out / "compare.png"
    columns = ("technique",) + SUMMARY_COLUMNS + (TARGET_COLUMNS if target is not None else ())
    _write_csv(csv_path, columns, ([technique] + [row[c] for c in columns[1:]] for technique, row in rows.items()))
    draw_compare(png_path, reports, target)
    return [csv_path, png_path]


def draw_compare(path: str | Path, reports: Mapping[str, dict[str, Any]], target: float | None = None) -> None:
    """compare.png: the summaries as bars, and each technique's test accuracy against time."""
    plot_compare(compare_rows(reports, target), {t: accuracy_curve(r) for t, r in reports.items()}, path, target)


def compare_rows(
    reports: Mapping[str, dict[str, Any]], target: float | None = None
) -> dict[str, dict[str, float]]:
    """technique -> its summary (`summarize`), plus, given a target accuracy, that target and
    the time to reach it (`time_to_accuracy_s`, NaN if never reached)."""
    if not reports:
        raise ValueError("a comparison needs at least one report (got none)")
    if target is not None:
        check_target(target)
    rows = {}
    for technique, report in reports.items():
        rows[technique] = summarize(report)
        if target is not None:
            rows[technique] |= {"target_accuracy": target, "time_to_accuracy_s": time_to_accuracy(report, target)}
    return rows


def summarize(report: dict[str, Any]) -> dict[str, float]:
    """Condense a run to one row: means over epochs, accuracy and loss of the last epoch.

    Server idle is the mean idle time of the nodes that serve the data owners (role server;
    MP-SL's compute nodes; FTPipeHD's workers); device idle that of the data owners (role
    device, FTPipeHD's central node), by report["roles"]. Missing values come out as NaN.
    """
    epochs = checked_epochs(report)
    if not epochs:
        raise ValueError("report has no epochs; summarize needs at least one")
    roles = report.get("roles")
    if not isinstance(roles, Mapping):
        raise ValueError("report lacks 'roles' (node -> role); summarize needs it to tell servers from devices")
    last = max(epochs, key=lambda epoch: epoch["epoch"])
    return {
        "epoch_time_s": _mean(e.get("time_s") for e in epochs),
        "server_idle_s": _mean(_idle_of(e["idle_s"], roles, SERVER_SIDE) for e in epochs),
        "device_idle_s": _mean(_idle_of(e["idle_s"], roles, DATA_SIDE) for e in epochs),
        "throughput_Bps": _mean(e.get("throughput_Bps") for e in epochs),
        "efficiency": _mean(e.get("efficiency") for e in epochs),
        "test_accuracy": _number(last.get("test_accuracy")),
        "train_loss": _number(last.get("train_loss")),
    }


def metrics_columns(epochs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Header of metrics.csv: fixed columns, idle_s:<node>, bytes:<link>, predicted_time_s."""
    nodes = sorted({node for e in epochs for node in e["idle_s"]})
    links = sorted({link for e in epochs for link in e["bytes"]})
    columns = list(METRICS_COLUMNS)
    columns += [f"idle_s:{node}" for node in nodes] + [
        f"bytes:{link}" for link in links
    ]
    memory = sorted({node for e in epochs for node in e.get("memory_bytes", {})})
    columns += [f"memory_bytes:{node}" for node in memory]
    if any("predicted_time_s" in e for e in epochs):
        columns.append("predicted_time_s")
    return columns


def _metrics_cell(epoch: Mapping[str, Any], column: str) -> object:
    key, _, name = column.partition(":")
    if name:
        return epoch.get(key, {}).get(name)
    return epoch.get(column)


def checked_epochs(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The report's epochs, checked for the keys the files need; every problem is raised once."""
    epochs = report.get("epochs")
    if not isinstance(epochs, list):
        raise TypeError(
            f"report['epochs'] must be a list of dicts (got {type(epochs).__name__})"
        )
    required = METRICS_COLUMNS + ("idle_s", "bytes")
    problems = []
    for index, epoch in enumerate(epochs):
        if not isinstance(epoch, Mapping):
            problems.append(f"epochs[{index}] is {type(epoch).__name__}, not a dict")
            continue
        missing = [key for key in required if key not in epoch]
        if missing:
            problems.append(f"epochs[{index}] lacks {', '.join(missing)}")
    if problems:
        raise ValueError(
            f"bad report ({'; '.join(problems)}); each epoch needs {list(required)}"
        )
    return epochs


def read_report(folder: str | Path) -> dict[str, Any]:
    """report.json of the run in `folder`, checked for what the tables need."""
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise ValueError(f"{folder} has no report.json: not the --out folder of run, launch or compare")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(report, dict) or "technique" not in report:
        raise ValueError(f"{path} is not a splitpipe report (no 'technique' key)")
    try:
        checked_epochs(report)
    except TypeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return report


def read_compare(folder: str | Path) -> tuple[list[str], float | None]:
    """The techniques of compare.csv in `folder`, in its order, and the target accuracy if it had one."""
    path = Path(folder) / "compare.csv"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read {path} ({exc})") from None
    techniques = [row.get("technique") or "" for row in rows]
    if not techniques or not all(techniques):
        raise ValueError(f"{path} lists no techniques (expected a 'technique' column, one row each)")
    targets = {row.get("target_accuracy") or "" for row in rows} - {""}
    if len(targets) > 1:
        raise ValueError(f"{path} has several target accuracies ({', '.join(sorted(targets))}); expected one")
    if not targets:
        return techniques, None
    (text,) = targets
    try:
        return techniques, check_target(float(text))
    except ValueError:
        raise ValueError(f"{path} has a bad target_accuracy {text!r}") from None


def read_trace_spans(folder: str | Path, report: dict[str, Any]) -> list[Span] | None:
    """The spans kept in `folder`/trace.json (report.json has none), or None without a trace."""
    path = Path(folder) / "trace.json"
    return read_spans(path, report) if path.is_file() else None


def _idle_of(idle: Mapping[str, float], roles: Mapping[str, str], wanted: tuple[str, ...]) -> float:
    return _mean(v for node, v in idle.items() if roles.get(node) in wanted)


def _number(value: object) -> float:
    if value is None:
        return math.nan
    if isinstance(value, numbers.Real):
        return float(value)
    raise ValueError(f"report metric must be a number or null (got {value!r})")


def _mean(values: Iterable[object]) -> float:
    numbers = [number for number in map(_number, values) if not math.isnan(number)]
    return sum(numbers) / len(numbers) if numbers else math.nan


def _write_csv(
    path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]
) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_csv_value(value) for value in row] for row in rows)


def _csv_value(value: object) -> object:
    """Missing (None or NaN) is an empty cell; everything else is written as it is."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _jsonable(value: object) -> object:
    """Turn numpy scalars and arrays, and paths, into plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(
        f"report value {value!r} of type {type(value).__name__} is not JSON"
    )
