"""Run artefacts: report.json, CSV metrics, timeline and comparison plots, terminal tables."""

from splitpipe.report.files import summarize, write_compare, write_run
from splitpipe.report.table import format_table
from splitpipe.report.timeline import plot_timeline

__all__ = ["format_table", "plot_timeline", "summarize", "write_compare", "write_run"]
