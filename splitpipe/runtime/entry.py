"""Where a node process starts: `run_node(NodeOptions)`, or `python -m splitpipe.runtime.entry OPTIONS.json`.

The CLI's `node` command and the launcher's children both come here; the launcher hands a
child its options as JSON written by the same declaration that reads it (runtime/options.py),
so no flag is ever spelled as a string. The transport is imported only when a node really starts;
devices and data owners dial out unless given --listen (runtime/dialout.py).
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from splitpipe.runtime.options import NodeOptions

if TYPE_CHECKING:
    from splitpipe.checkpoint import Checkpoint
    from splitpipe.plan import Topology
    from splitpipe.runtime.node import Speed
    from splitpipe.runtime.transport import SocketTransport, Transport
    from splitpipe.setup import Setup

__all__ = ["run_node", "main"]

log = logging.getLogger("splitpipe.runtime")


def run_node(options: NodeOptions) -> int:
    """Run one node until the run ends: 0 when it went well, 1 when the run failed (printed, one line).

    Bad options raise ValueError naming them, before anything listens.
    """
    import torch

    from splitpipe.runtime.dialout import DEFAULT_LISTEN, dials_out
    from splitpipe.runtime.member import run_member
    from splitpipe.runtime.node import speed_over_time
    from splitpipe.runtime.protocol import coordinator_of, node_name
    from splitpipe.runtime.transport import TransportError
    from splitpipe.runtime.transport.memory import keep_freed_memory
    from splitpipe.setup import prepare

    if options.threads is not None:
        torch.set_num_threads(options.threads)
    keep_freed_memory()   # received tensors reuse freed buffers instead of faulting in fresh pages
    setup = prepare(options.config)
    name = node_name(setup.topology, options.role, options.id)
    coordinator = coordinator_of(setup.plan)
    leads = name == coordinator
    if not leads and not options.coordinator:
        raise ValueError(f"{name} needs --coordinator HOST:PORT (where {coordinator} listens)")
    if options.resume and not leads:
        raise ValueError(f"--resume is for the coordinator ({coordinator}); {name} gets its state from it")
    resume = _checkpoint(options.resume, setup) if options.resume else None
    peer = None if leads else (coordinator, str(options.coordinator))
    listen = options.listen or (None if dials_out(setup.plan, name) and not leads else DEFAULT_LISTEN)
    transport = _transport(options, listen, name, setup.topology, peer)
    with transport:
        transport.start()
        address = f"{_advertised_host(options, listen)}:{transport.port}" if listen else ""
        if options.port_file and listen:
            Path(options.port_file).write_text(f"{transport.port}\n")
        if listen:
            log.info("%s: listening on %s (reached at %s)", name, listen, address)
        else:
            log.info("%s: dials out, listens nowhere (its peers reach it on the connections it opens)", name)
        speed = speed_over_time(setup.topology.node(name).speed if options.emulate_speed else 1.0,
                                [(at, v) for node, at, v in setup.config.speed_changes() if node == name])
        try:
            if leads:
                return _coordinate(setup, name, transport, address, options.timeout, speed, resume)
            run_member(setup, name, transport, coordinator, address, timeout=options.timeout, speed=speed)
        except (RuntimeError, TransportError) as exc:
            print(f"splitpipe node {name}: error: {_first_line(exc)}", file=sys.stderr)
            return 1
    return 0


def _checkpoint(out: str, setup: Setup) -> Checkpoint:
    """The last complete checkpoint under `out`, checked against this run (ValueError: one line)."""
    from splitpipe.checkpoint import check_resumable, latest_checkpoint, read_checkpoint

    checkpoint = read_checkpoint(latest_checkpoint(out))
    check_resumable(checkpoint, setup)
    return checkpoint


def _coordinate(setup: Setup, name: str, transport: Transport, address: str, timeout: float, speed: Speed,
                resume: Checkpoint | None) -> int:
    from splitpipe.checkpoint import Checkpoints
    from splitpipe.report.console import epoch_progress, show_run
    from splitpipe.runtime.coordinator import Coordinator

    config = setup.config
    every = 1 if config.checkpoint_every is None else config.checkpoint_every
    checkpoints = Checkpoints(config.out, every, config.keep_checkpoints) if config.out and every else None
    with epoch_progress(config, f"{config.technique} (distributed)") as progress:
        result = Coordinator(setup, name, transport, address=address, timeout=timeout, speed=speed,
                             progress=progress, checkpoints=checkpoints, resume=resume).run()
    show_run(result.report, result.spans, config.out, "distributed, wall clock")
    if config.out and result.model is not None:
        from splitpipe.checkpoint import save_run_model

        print(f"wrote {save_run_model(config.out, setup, result.model)}")
    return 0


def _transport(options: NodeOptions, listen: str | None, name: str, topology: Topology,
               coordinator: tuple[str, str] | None) -> SocketTransport:
    from splitpipe.runtime.protocol import parse_address
    from splitpipe.runtime.transport import SocketTransport, TlsConfig, load_secret

    if listen is not None:
        parse_address(listen, "--listen")
    peers = {}
    if coordinator is not None:
        parse_address(coordinator[1], "--coordinator")
        peers[coordinator[0]] = coordinator[1]
    files = (options.tls_cert, options.tls_key, options.tls_ca)
    tls = TlsConfig(*(Path(str(p)) for p in files)) if all(files) else None
    return SocketTransport(name, listen, peers, load_secret(options.secret_file), links=topology.links, tls=tls,
                           radios=topology.radios)


def _advertised_host(options: NodeOptions, listen: str) -> str:
    if options.advertise:
        return options.advertise
    host = listen.rpartition(":")[0]
    return socket.getfqdn() if host in ("0.0.0.0", "[::]", "::") else host


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m splitpipe.runtime.entry OPTIONS.json`: a launcher's child. Bad input: one line, exit 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m splitpipe.runtime.entry OPTIONS.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return run_node(NodeOptions.from_json(Path(args[0]).read_bytes()))
    except (ValueError, OSError) as exc:
        print(f"splitpipe node: error: {_first_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
