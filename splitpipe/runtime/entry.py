"""Where a node process starts: `run_node(NodeOptions)`, or `python -m splitpipe.runtime.entry -`.

The CLI's `node` command and the launcher's children both come here; the launcher pipes a
child its nodes' options (JSON written by the same declaration that reads it,
runtime/options.py) and keys (runtime/handover.py), so no flag is ever spelled as a string and
no secret lies in a file. The transport is imported only when a node really starts; devices and
data owners dial out unless given --listen (runtime/dialout.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from splitpipe.runtime.address import CONNECT_S, advertised_host
from splitpipe.runtime.handover import Handover
from splitpipe.runtime.options import NodeOptions

if TYPE_CHECKING:
    from splitpipe.checkpoint import Checkpoint
    from splitpipe.runtime.node import Speed
    from splitpipe.runtime.transport import SocketTransport, Transport
    from splitpipe.runtime.transport.identity import Identity
    from splitpipe.setup import Setup

__all__ = ["run_node", "run_handover", "main", "exit_process"]

log = logging.getLogger("splitpipe.runtime")


def run_node(options: NodeOptions, *, identity: Identity | None = None,
             port_out: Callable[[int], None] | None = None, setup: Setup | None = None) -> int:
    """Run one node until the run ends: 0 when it went well, 1 when the run failed (printed, one line).

    Trust is `identity` (a launcher's, in memory), else the keys of --keys, else the shared
    secret. `port_out` is told the port once listening; `setup` spares a process that runs
    several nodes preparing the same config again. Bad options raise ValueError naming them,
    before anything listens.
    """
    import torch

    from splitpipe.runtime.dialout import DEFAULT_LISTEN, dials_out
    from splitpipe.runtime.member import run_member
    from splitpipe.runtime.node import speed_over_time
    from splitpipe.runtime.protocol import coordinator_of, node_name, parse_address
    from splitpipe.runtime.transport import TransportError
    from splitpipe.runtime.transport.memory import keep_freed_memory
    from splitpipe.setup import prepare

    if options.threads is not None:
        torch.set_num_threads(options.threads)
    keep_freed_memory()   # received tensors reuse freed buffers instead of faulting in fresh pages
    setup = setup or prepare(options.config)
    name = node_name(setup.topology, options.role, options.id)
    coordinator = coordinator_of(setup.plan)
    leads = name == coordinator
    if not leads and not options.coordinator:
        raise ValueError(f"{name} needs --coordinator HOST:PORT (where {coordinator} listens)")
    if options.resume and not leads:
        raise ValueError(f"--resume is for the coordinator ({coordinator}); {name} gets its state from it")
    resume = _checkpoint(options.resume, setup) if options.resume else None
    listen = options.listen or (None if dials_out(setup.plan, name) and not leads else DEFAULT_LISTEN)
    if listen is not None:
        parse_address(listen, "--listen")
    if options.coordinator:
        parse_address(options.coordinator, "--coordinator")
    peer = None if leads else (coordinator, str(options.coordinator))
    host = advertised_host(listen, options.advertise, None if leads else options.coordinator) if listen else ""
    transport = _transport(options, listen, name, setup, peer, identity)
    with transport:
        transport.start()
        address = f"{host}:{transport.port}" if listen else ""
        if options.port_file and listen:
            Path(options.port_file).write_text(f"{transport.port}\n")
        if port_out is not None:
            port_out(transport.port if listen else 0)
        if listen:
            log.info("%s: listening on %s (reached at %s)", name, listen, address)
        else:
            log.info("%s: dials out, listens nowhere (its peers reach it on the connections it opens)", name)
        speed = speed_over_time(setup.topology.node(name).speed if options.emulate_speed else 1.0,
                                [(at, v) for node, at, v in setup.config.speed_changes() if node == name])
        try:
            if leads:
                return _coordinate(setup, name, transport, address, options, speed, resume)
            run_member(setup, name, transport, coordinator, address, timeout=options.timeout, speed=speed,
                       silence_s=options.silence)
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


def _coordinate(setup: Setup, name: str, transport: Transport, address: str, options: NodeOptions,
                speed: Speed, resume: Checkpoint | None) -> int:
    from splitpipe.checkpoint import Checkpoints
    from splitpipe.report.console import epoch_progress, show_run
    from splitpipe.runtime.coordinator import Coordinator

    config = setup.config
    every = 1 if config.checkpoint_every is None else config.checkpoint_every
    checkpoints = Checkpoints(config.out, every, config.keep_checkpoints) if config.out and every else None
    with epoch_progress(config, f"{config.technique} (distributed)") as progress:
        result = Coordinator(setup, name, transport, address=address, timeout=options.timeout, speed=speed,
                             silence_s=options.silence, progress=progress, checkpoints=checkpoints,
                             resume=resume).run()
    show_run(result.report, result.spans, config.out, "distributed, wall clock")
    if config.out and result.model is not None:
        from splitpipe.checkpoint import save_run_model

        print(f"wrote {save_run_model(config.out, setup, result.model)}")
    return 0


def _transport(options: NodeOptions, listen: str | None, name: str, setup: Setup,
               coordinator: tuple[str, str] | None, identity: Identity | None) -> SocketTransport:
    from splitpipe.runtime.bounds import message_bounds
    from splitpipe.runtime.transport import SocketTransport, TlsConfig, load_secret
    from splitpipe.runtime.transport.identity import load_identity

    topology, bounds = setup.topology, message_bounds(setup)
    log.info("%s: drops data messages over %d bytes or %d tensors (derived from the model and batch size)",
             name, bounds.max_message_bytes, bounds.max_tensors)
    peers = dict([coordinator]) if coordinator is not None else {}
    files = (options.tls_cert, options.tls_key, options.tls_ca)
    tls = TlsConfig(*(Path(str(p)) for p in files)) if all(files) else None
    if identity is None and options.keys:
        identity = load_identity(name, options.keys)
    secret = None if identity is not None else load_secret(options.secret_file)
    return SocketTransport(name, listen, peers, secret, links=topology.links, tls=tls, identity=identity,
                           radios=topology.radios, connect_timeout=min(options.timeout, CONNECT_S),
                           **bounds.transport_limits())


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def run_handover(handover: Handover, port_line: Callable[[], bytes] = lambda: b"") -> int:
    """Every node of a launcher's handover, each in a thread with its own key and transport; the worst exit code.

    With the handover's coordinator_host, the coordinator's port is read from `port_line` once
    the config is prepared (the launcher sends it once the coordinator listens).
    """
    import os
    import threading

    from splitpipe.runtime.protocol import node_name
    from splitpipe.runtime.transport.identity import identity_from
    from splitpipe.setup import prepare

    setups: dict[str, Setup] = {}
    codes: list[int] = []

    def port_out(port: int) -> None:
        if handover.port_fd is not None:
            with os.fdopen(handover.port_fd, "w") as pipe:
                pipe.write(f"{port}\n")

    def one(options: NodeOptions, pem: bytes) -> None:
        try:
            setup = setups[options.config.model_dump_json()]
            name = node_name(setup.topology, options.role, options.id)
            codes.append(run_node(options, identity=identity_from(name, pem, handover.public), port_out=port_out,
                                  setup=setup))
        except (ValueError, OSError) as exc:
            print(f"splitpipe node: error: {_first_line(exc)}", file=sys.stderr)
            codes.append(2)
        except Exception:  # a bug: this node fails, the process says so in its exit code
            log.exception("node %s:%d failed", options.role, options.id)
            codes.append(1)

    nodes = list(handover.nodes)
    for options in nodes:  # one setup per config, shared by the nodes of this process
        key = options.config.model_dump_json()
        if key not in setups:
            setups[key] = prepare(options.config)
    if handover.coordinator_host is not None:
        port = port_line().strip().decode(errors="replace")
        if not port.isdigit():
            raise ValueError(f"the launcher sent no coordinator port (got {port[:20]!r}): it stopped")
        nodes = [n.with_(coordinator=f"{handover.coordinator_host}:{port}") for n in nodes]
    if len(nodes) == 1:
        one(nodes[0], handover.keys[0])
        return codes[0]
    threads = [threading.Thread(target=one, args=pair, name=f"splitpipe-node-{i}", daemon=True)
               for i, pair in enumerate(zip(nodes, handover.keys))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return max(codes, default=1)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m splitpipe.runtime.entry OPTIONS.json`, or `-` for a launcher's handover on stdin.

    Bad input: one line, exit 2.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m splitpipe.runtime.entry OPTIONS.json|-", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args[0] == "-":
            return run_handover(Handover.from_bytes(sys.stdin.buffer.readline()), sys.stdin.buffer.readline)
        return run_node(NodeOptions.from_json(Path(args[0]).read_bytes()))
    except (ValueError, OSError) as exc:
        print(f"splitpipe node: error: {_first_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def exit_process(code: int) -> NoReturn:
    """End this node process with `code` now, skipping interpreter finalization (flushed first).

    At finalization Python 3.11 ends each daemon thread that next asks for the GIL with
    pthread_exit; a transport thread inside a torch call (which released the GIL in a C++ guard)
    unwinds through that guard's destructor, and the process aborts with "terminate called without
    an active exception" (SIGABRT) although the run went well. Everything a node writes is
    closed by then, so nothing is lost by not finalizing.
    """
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    exit_process(main())
