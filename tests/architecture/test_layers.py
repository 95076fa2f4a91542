"""The floor plan holds: only a technique's own module names it, and the runtime stands on the
run loop, not on the emulator's driver or the CLI."""

import ast
from pathlib import Path

import splitpipe
from splitpipe.schedules import TECHNIQUES

PACKAGE = Path(splitpipe.__file__).parent


def _modules(under: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "proto" not in p.parts)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (prose may mention techniques)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    for node in ast.walk(tree):  # attribute docstrings: a bare string right after an assignment
        for field in ("body", "orelse"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                for before, after in zip(block, block[1:]):
                    if isinstance(before, (ast.Assign, ast.AnnAssign)) and isinstance(after, ast.Expr) \
                            and isinstance(after.value, ast.Constant):
                        ids.add(id(after.value))
    return ids


def _names_a_technique(text: str) -> bool:
    pieces = {p.strip() for p in text.replace("/", ",").split(",")}
    return bool(pieces & set(TECHNIQUES))


def test_no_module_outside_schedules_names_a_technique() -> None:
    offenders = []
    for path in _modules():
        if path.parent.name == "schedules":
            continue
        tree = ast.parse(path.read_text())
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip \
                    and _names_a_technique(node.value):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}")
    assert not offenders, "technique names outside schedules/ (ask the registry):\n" + "\n".join(offenders)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_runtime_does_not_import_the_emulator_driver_or_the_cli() -> None:
    banned = ("splitpipe.experiment", "splitpipe.cli")
    offenders = [f"{path.relative_to(PACKAGE.parent)} imports {name}"
                 for path in _modules(PACKAGE / "runtime") for name in sorted(_imports(path))
                 if name.startswith(banned)]
    assert not offenders, "\n".join(offenders)


def test_the_scan_sees_a_technique_name() -> None:
    assert _names_a_technique("mpsl") and _names_a_technique("fl,sl") and not _names_a_technique("flat")
