"""Show a finished run again from its folder: the tables it printed and its pictures, re-drawn.

A run folder (run, launch: report.json) prints its epoch table and summary line again and
re-draws timeline.png from trace.json, which keeps every span (report.json keeps only
per-epoch metrics). A compare folder (compare.csv) prints the comparison table again from
each technique's subfolder, re-draws compare.png and every technique's timeline. Nothing is
re-run and report.json, metrics.csv, compare.csv and trace.json stay as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from splitpipe.report import plot_timeline
from splitpipe.report.console import clock_of, print_compare, print_run
from splitpipe.report.files import draw_compare, read_compare, read_report, read_trace_spans

__all__ = ["add_arguments", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="the --out folder of a run, launch or compare")


def execute(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if not out.is_dir():
        raise ValueError(f"no run folder at {out} (expected the --out folder of run, launch or compare)")
    if (out / "compare.csv").is_file():
        techniques, target = read_compare(out)
        reports = {t: read_report(out / t) for t in techniques}
        print_compare(reports, target)
        for technique, report in reports.items():
            _redraw_timeline(out / technique, report)
        draw_compare(out / "compare.png", reports, target)
        print(f"wrote {out / 'compare.png'}")
        return 0
    report = read_report(out)
    print_run(report, clock_of(report))
    _redraw_timeline(out, report)
    return 0


def _redraw_timeline(folder: Path, report: dict[str, Any]) -> None:
    spans = read_trace_spans(folder, report)
    if spans is None:
        print(f"{folder} has no trace.json: timeline.png not re-drawn")
    elif spans:
        plot_timeline(spans, folder / "timeline.png", title=str(report.get("technique", "")))
        print(f"wrote {folder / 'timeline.png'}")
