"""`splitpipe show OUT`: a finished run's tables printed again and its pictures re-drawn; a bad
folder is one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splitpipe.cli import main

PROFILE = str(Path(__file__).parents[1] / "golden_reports" / "profile_vgg5_digits.json")
QUICK = ["--dataset", "digits", "--devices", "2", "--epochs", "2", "--batch-size", "256", "--timing", "profile",
         "--profile", PROFILE, "--no-progress"]


def _printed(text: str) -> list[str]:
    """What a command printed besides the files it wrote."""
    return [line for line in text.splitlines() if not line.startswith("wrote ")]


def test_show_prints_the_run_again_and_redraws_its_timeline(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["run", "--technique", "pipelearn", *QUICK, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    (out / "timeline.png").unlink()
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert _printed(shown) == _printed(printed)
    assert "pipelearn:" in shown and "(emulated, profile timing)" in shown
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"


def test_show_of_a_compare_folder_prints_the_table_and_redraws_compare_png(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", "--techniques", "sl,pipelearn", "--target-accuracy", "0.2", *QUICK,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "time_to_accuracy_s" in printed and "test accuracy >= 0.2" in printed
    for picture in (out / "compare.png", out / "sl" / "timeline.png"):
        picture.unlink()
    assert main(["show", str(out)]) == 0
    assert _printed(capsys.readouterr().out) == _printed(printed)
    assert (out / "compare.png").is_file() and (out / "sl" / "timeline.png").is_file()


def _corrupt(folder: Path) -> None:
    folder.mkdir()
    (folder / "report.json").write_text('{"technique": "sl", "epochs": [')


def _not_a_report(folder: Path) -> None:
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"epochs": []}))


@pytest.mark.parametrize(("make", "named"), [
    (lambda folder: None, "no run folder at"),
    (lambda folder: folder.mkdir(), "has no report.json"),
    (_corrupt, "is not valid JSON"),
    (_not_a_report, "not a splitpipe report"),
])
def test_a_bad_folder_is_one_line_and_exit_code_2(make, named: str, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "out"
    make(folder)
    assert main(["show", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and str(folder) in err
