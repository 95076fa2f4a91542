"""A whole cluster in one process, one thread per node: for tests and quick checks of the runtime.

The nodes still talk only through their transports (in-process queues by default, or gRPC
over loopback), so this runs the same code as a cluster of processes, minus the start-up.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from splitpipe.runtime.coordinator import ClusterResult, Coordinator
from splitpipe.runtime.member import run_member
from splitpipe.runtime.node import Speed
from splitpipe.runtime.protocol import coordinator_of
from splitpipe.runtime.transport import Transport, make_transports
from splitpipe.setup import Setup

__all__ = ["run_in_threads"]


def run_in_threads(setup: Setup, transports: Mapping[str, Transport] | None = None, *,
                   timeout: float = 120.0, speeds: Mapping[str, Speed] | None = None,
                   **coordinator_options: Any) -> ClusterResult:
    """Run `setup` with every node of its topology in a thread; the caller's thread coordinates.

    Without `transports`, in-process ones shaped by the plan's links are made and closed here.
    Each node tells the others its transport's `address` ("" in-process). `coordinator_options`
    go to the Coordinator (checkpoints, resume, its own speed); `speeds` are the other nodes' (node.py's Speed).
    """
    names = setup.topology.names
    owned = transports is None
    transports = make_transports("local", names, setup.topology.links, radios=setup.topology.radios) if transports is None else transports
    missing = [n for n in names if n not in transports]
    if missing:
        raise ValueError(f"no transport for node(s) {', '.join(missing)}")
    coordinator = coordinator_of(setup.plan)
    errors: dict[str, BaseException] = {}

    def member(name: str) -> None:
        try:
            run_member(setup, name, transports[name], coordinator, transports[name].address,
                       timeout=timeout, speed=(speeds or {}).get(name, 1.0))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            errors[name] = exc

    threads = [threading.Thread(target=member, args=(n,), name=f"splitpipe-{n}", daemon=True)
               for n in names if n != coordinator]
    for thread in threads:
        thread.start()
    try:
        result = Coordinator(setup, coordinator, transports[coordinator],
                             address=transports[coordinator].address, timeout=timeout, **coordinator_options).run()
    finally:
        for thread in threads:
            thread.join(timeout)
        if owned:
            for transport in transports.values():
                transport.close()
    if errors:
        name, exc = next(iter(errors.items()))
        raise RuntimeError(f"node {name} failed: {exc}") from exc
    return result
