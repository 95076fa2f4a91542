"""Timeline of one epoch: lanes, epoch choice, labels, many spans."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitpipe.report import plot_timeline
from splitpipe.report.timeline import lane_order, select_epoch, timeline_figure
from splitpipe.span import Span


def _two_epochs() -> list[Span]:
    return [
        Span("device0", "forward", 0.0, 1.0, epoch=0, label="F0.0"),
        Span("device0->server", "upload", 1.0, 1.5, epoch=0),
        Span("server", "forward", 1.5, 2.0, epoch=0),
        Span("device1", "forward", 10.0, 11.0, epoch=1),
        Span("device1->server", "upload", 11.0, 12.5, epoch=1),
        Span("server", "backward", 12.5, 14.0, epoch=1),
        Span("server->device1", "download", 14.0, 14.25, epoch=1),
    ]


def _lanes(fig: object) -> list[str]:
    ax = fig.axes[0]  # type: ignore[attr-defined]
    return [label.get_text() for label in ax.get_yticklabels()]


def test_lanes_put_server_on_top_and_links_under_their_source() -> None:
    names = [
        "device10",
        "device2->server",
        "device2",
        "server->device2",
        "server",
        "device10->server",
    ]
    assert lane_order(names) == [
        "server", "server->device2", "device2", "device2->server", "device10", "device10->server",
    ]  # fmt: skip


def test_first_epoch_is_drawn_by_default() -> None:
    fig = timeline_figure(_two_epochs())
    assert _lanes(fig) == ["server", "device0", "device0->server"]
    assert fig.axes[0].get_xlim() == (0.0, 2.0)


def test_chosen_epoch_only_is_drawn() -> None:
    fig = timeline_figure(_two_epochs(), title="sfl", epoch=1)
    ax = fig.axes[0]
    assert _lanes(fig) == ["server", "server->device1", "device1", "device1->server"]
    assert ax.get_xlim() == (10.0, 14.25)
    assert len(ax.collections) == 4  # one broken_barh per (resource, category)
    assert ax.get_title() == "sfl (epoch 1)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "forward",
        "backward",
        "upload",
        "download",
    ]


def test_absent_epoch_names_the_epochs_present() -> None:
    with pytest.raises(ValueError, match=r"epoch 7 \(epochs present: \[0, 1\]\)"):
        select_epoch(_two_epochs(), 7)


def test_unknown_category_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown span categories \\['compute'\\]"):
        timeline_figure([Span("server", "compute", 0.0, 1.0)])


def test_labels_only_inside_wide_bars() -> None:
    spans = [
        Span("server", "forward", 0.0, 50.0, label="F0.0"),
        Span("server", "backward", 50.0, 50.001, label="B0.0"),
    ]
    texts = [text.get_text() for text in timeline_figure(spans).axes[0].texts]
    assert texts == ["F0.0"]


def test_thousands_of_spans_draw_one_collection_per_group(tmp_path: Path) -> None:
    spans = [
        Span(f"device{i % 7}", "forward" if i % 2 else "backward", i * 0.01, i * 0.01 + 0.008,
             label=f"F{i}")
        for i in range(20_000)
    ]  # fmt: skip
    path = tmp_path / "timeline.png"
    plot_timeline(spans, path, title="many")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert (
        len(timeline_figure(spans).axes[0].collections) == 14
    )  # 7 devices x 2 categories


def test_the_epochs_events_are_marked() -> None:
    events = [{"epoch": 1, "time_s": 12.0, "event": "repartition"}, {"epoch": 0, "time_s": 1.0, "event": "failure"}]
    ax = timeline_figure(_two_epochs(), epoch=1, events=events).axes[0]
    assert [line.get_xdata()[0] for line in ax.get_lines()] == [12.0]  # epoch 0's failure is not drawn
    assert "repartition" in [t.get_text() for t in ax.texts]
