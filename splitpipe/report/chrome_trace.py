"""trace.json: a run's spans in the Chrome trace event format, to scroll and zoom in Perfetto.

The layout, as Perfetto shows it (one process per row group, its threads below):

    epochs                   epoch 0 | epoch 1 | ...      (1) one slice per epoch
    server                                                (2) one process per node
      owner 0                F0.0  B0.0 ...               (3) a thread per data owner served
      owner 1
      -> device0             download ...                 (4) the links out of the node
    device0
      owner 0
      -> server              upload ...

Links are threads under the *sending* node's process rather than processes of their own:
a link direction is that node's outgoing traffic, so it sits right below the compute it
follows, the process list stays one entry per machine, and collapsing a node hides its
links with it (the same order as timeline.png). Spans restart at 0 each epoch; here each
epoch starts where the previous one ended (the report's epoch times, summed). Plan changes,
failures and re-partitions (report["events"]) are global instant events (5).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

from splitpipe.report.timeline import lane_order
from splitpipe.span import CATEGORIES, Span

__all__: list[str] = []

#: Microseconds per second: trace timestamps are in microseconds.
US = 1e6
#: Process and thread id of the epochs track; nodes are numbered from 2 in lane order (Perfetto
#: reserves 0 for the idle process of kernel traces, so no track uses it).
EPOCHS_PID = EPOCHS_TID = 1
#: A lane's thread id is LANE_TID + lane (schedules use lanes -2 and -1 too; Perfetto wants ids >= 0).
LANE_TID = 10
#: Thread ids of a node's links start here, after any lane a schedule uses.
LINK_TID = 1000
#: Span fields copied into each slice's args (besides the timestamps and the track).
ARGS = ("category", "label", "bytes", "step", "micro_batch", "part", "owner", "epoch", "resource")


def epoch_offsets(report: Mapping[str, Any]) -> dict[int, float]:
    """Epoch number -> seconds from the run's start to that epoch's start (the times before it, summed)."""
    epochs = report.get("epochs")
    if not isinstance(epochs, list):
        raise ValueError(f"report['epochs'] must be a list, got {type(epochs).__name__}")
    times = [float(e["time_s"]) for e in epochs]
    starts = [0.0, *accumulate(times)]
    return {int(e["epoch"]): start for e, start in zip(epochs, starts)}


def trace_events(report: Mapping[str, Any], spans: Sequence[Span]) -> list[dict[str, Any]]:
    """Every event of trace.json: metadata naming the tracks, then slices, then instants."""
    offsets = epoch_offsets(report)
    nodes = lane_order({*report.get("roles", {}), *(s.resource.split("->", 1)[0] for s in spans)})
    pids = {node: index + EPOCHS_PID + 1 for index, node in enumerate(nodes)}
    tracks = _tracks(spans, pids)
    events = _metadata(nodes, pids, tracks)
    events += _epoch_slices(report, offsets)  # (1)
    for span in spans:  # (2) (3) (4)
        if span.epoch not in offsets:
            raise ValueError(f"span {span.label or span.category} on {span.resource} is in epoch {span.epoch}, "
                             f"which the report lacks (epochs: {sorted(offsets)})")
        pid, tid = tracks[(span.resource, span.owner)]
        events.append({"name": span.label or span.category, "cat": span.category, "ph": "X",
                       "ts": (offsets[span.epoch] + span.start) * US, "dur": span.duration * US,
                       "pid": pid, "tid": tid, "args": {key: getattr(span, key) for key in ARGS}})
    for event in report.get("events", []):  # (5)
        at = offsets.get(int(event["epoch"]), 0.0) + float(event["time_s"])
        events.append({"name": str(event["event"]), "cat": "event", "ph": "i", "s": "g", "ts": at * US,
                       "pid": EPOCHS_PID, "tid": EPOCHS_TID, "args": dict(event)})
    return events


def write_trace(path: str | Path, report: Mapping[str, Any], spans: Sequence[Span]) -> Path:
    """Write trace.json (JSON object format) to `path` and return the path."""
    document = {
        "traceEvents": trace_events(report, spans),
        "displayTimeUnit": "ms",
        "otherData": {key: str(report.get(key, "")) for key in ("technique", "engine", "timing")},
    }
    path = Path(path)
    path.write_text(json.dumps(document) + "\n", encoding="utf-8")
    return path


def read_spans(path: str | Path, report: Mapping[str, Any]) -> list[Span]:
    """The spans of a trace.json written by `write_trace`, back on each epoch's own clock."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        events = document["traceEvents"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read spans from {path}: {exc}") from None
    offsets = epoch_offsets(report)
    spans = []
    for event in events:
        if event.get("ph") != "X" or event.get("cat") not in CATEGORIES:
            continue
        fields = {key: event["args"][key] for key in ARGS}
        start = event["ts"] / US - offsets.get(int(fields["epoch"]), 0.0)
        spans.append(Span(start=start, end=start + event["dur"] / US, **fields))
    return spans


def _tracks(spans: Sequence[Span], pids: Mapping[str, int]) -> dict[tuple[str, int], tuple[int, int]]:
    """(resource, lane) -> (pid, tid): a node's lanes are its threads; a link, whatever the
    lane of its messages, is one thread of the sending node."""
    links = lane_order({s.resource for s in spans if s.is_link})
    link_tid = {link: LINK_TID + index for index, link in enumerate(links)}
    tracks = {}
    for span in spans:
        if span.is_link:
            sender = span.resource.split("->", 1)[0]
            tracks[(span.resource, span.owner)] = (pids[sender], link_tid[span.resource])
        else:
            tracks[(span.resource, span.owner)] = (pids[span.resource], LANE_TID + span.owner)
    return tracks


def _metadata(nodes: Sequence[str], pids: Mapping[str, int],
              tracks: Mapping[tuple[str, int], tuple[int, int]]) -> list[dict[str, Any]]:
    """process_name/thread_name events, with sort indexes so Perfetto keeps lane order."""
    events = [_meta("process_name", EPOCHS_PID, 0, "epochs"), _meta("process_sort_index", EPOCHS_PID, 0, 0),
              _meta("thread_name", EPOCHS_PID, EPOCHS_TID, "epochs")]
    for node in nodes:
        events += [_meta("process_name", pids[node], 0, node), _meta("process_sort_index", pids[node], 0, pids[node])]
    names = {ids: f"-> {resource.split('->', 1)[1]}" if "->" in resource else f"owner {lane}"
             for (resource, lane), ids in tracks.items()}
    for (pid, tid), name in sorted(names.items()):
        events += [_meta("thread_name", pid, tid, name), _meta("thread_sort_index", pid, tid, tid)]
    return events


def _meta(kind: str, pid: int, tid: int, value: str | int) -> dict[str, Any]:
    key = "name" if kind.endswith("_name") else "sort_index"
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": {key: value}}


def _epoch_slices(report: Mapping[str, Any], offsets: Mapping[int, float]) -> list[dict[str, Any]]:
    return [{"name": f"epoch {e['epoch']}", "cat": "epoch", "ph": "X", "ts": offsets[int(e["epoch"])] * US,
             "dur": float(e["time_s"]) * US, "pid": EPOCHS_PID, "tid": EPOCHS_TID,
             "args": {"epoch": e["epoch"], "time_s": e["time_s"]}} for e in report["epochs"]]
