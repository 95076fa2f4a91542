"""The README's flag table is the one rendered from the declarations."""

from pathlib import Path

from splitpipe.cli.flags_doc import END, START, flag_table, update_readme

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_flag_table_is_generated_from_the_declaration() -> None:
    text = README.read_text()
    table = text.split(START + "\n", 1)[1].split(END, 1)[0]
    assert table == flag_table(), "run: python -m splitpipe.cli.flags_doc"
    assert update_readme(text) == text


def test_table_has_a_row_per_flag_with_its_toml_key() -> None:
    rows = flag_table().splitlines()
    assert "| `--device-speed` LIST | `device_speed` | `0.1` |" in "\n".join(rows)
    assert any(r.startswith("| `--no-progress` | `progress` | `true` |") for r in rows)
