"""Callers use the whole Transport interface; none probes a transport with getattr or hasattr."""

from __future__ import annotations

import ast
from pathlib import Path

import splitpipe

PACKAGE = Path(splitpipe.__file__).parent
TRANSPORT_PACKAGE = PACKAGE / "runtime" / "transport"


def probes(source: str) -> list[str]:
    """Every getattr(...)/hasattr(...) call whose object's expression mentions a transport."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr") and node.args
                and "transport" in ast.unparse(node.args[0]).lower()):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_scan_finds_probes() -> None:
    source = "a = getattr(transports[name], 'address', '')\nif hasattr(self.transport, 'add_peer'): pass\n"
    assert probes(source) == ["line 1: getattr(transports[name], 'address', '')",
                              "line 2: hasattr(self.transport, 'add_peer')"]
    assert probes("getattr(config, 'lr')\n") == []


def test_no_module_outside_the_transport_package_probes_a_transport() -> None:
    modules = [p for p in PACKAGE.rglob("*.py") if TRANSPORT_PACKAGE not in p.parents]
    assert len(modules) > 50
    bad = [f"{p.relative_to(PACKAGE.parent)} {hit}" for p in modules for hit in probes(p.read_text())]
    assert not bad, "use the Transport interface instead:\n" + "\n".join(bad)
