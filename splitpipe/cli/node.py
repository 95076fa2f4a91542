"""Run one node of a distributed run (server, device, compute node, aggregator, central node or worker).

Start the coordinating node (the server; MP-SL's aggregator, FTPipeHD's central node) first,
then every other node with --coordinator pointing at it. Every node reads the same config;
the coordinator checks that they agree, assigns the work and writes the report.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from splitpipe.cli.output import show_run
from splitpipe.cli.progress import epoch_progress
from splitpipe.config import RunConfig, load_toml
from splitpipe.experiment import Setup, prepare
from splitpipe.network import LinkSpec
from splitpipe.runtime.protocol import ROLES, coordinator_of, node_name, parse_address

if TYPE_CHECKING:  # gRPC is imported only when a node really starts
    from splitpipe.runtime.transport import GrpcTransport, Transport

__all__ = ["add_arguments", "execute"]

log = logging.getLogger("splitpipe.runtime")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", required=True, choices=ROLES, help="what this node is in the plan")
    parser.add_argument("--id", type=int, default=0, help="which node of its role: 2 for device2 (default: 0)")
    parser.add_argument("--config", required=True, help="the run's TOML file, the same on every node")
    parser.add_argument("--listen", default="0.0.0.0:50051", help="HOST:PORT to listen on; port 0 picks a free one "
                        "(default: 0.0.0.0:50051)")
    parser.add_argument("--advertise", help="HOST where the other nodes reach this one (default: the --listen "
                        "host, or this machine's name when listening on all interfaces)")
    parser.add_argument("--coordinator", help="HOST:PORT of the coordinating node (every other node needs it)")
    parser.add_argument("--secret-file", help="file holding the shared secret (default: $SPLITPIPE_SECRET)")
    parser.add_argument("--tls-cert", help="this node's certificate (PEM), for mutual TLS")
    parser.add_argument("--tls-key", help="this node's private key (PEM)")
    parser.add_argument("--tls-ca", help="the CA certificate that signed every node's certificate (PEM)")
    parser.add_argument("--server-device", help="torch device for the server's or compute nodes' parts: cpu or cuda")
    parser.add_argument("--out", help="coordinator: directory for report.json, metrics.csv, trace.json and timeline.png")
    parser.add_argument("--tensorboard", help="coordinator: directory for TensorBoard scalars per epoch "
                        "(needs the tensorboard extra)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds any phase may wait (nodes joining, a message, a report) (default: 600)")
    parser.add_argument("--threads", type=int, help="torch CPU threads of this node (default: torch's choice)")
    parser.add_argument("--emulate-speed", action="store_true",
                        help="stretch each compute action to measured / speed, with this node's speed from the "
                             "config (a local cluster standing in for slower devices)")
    parser.add_argument("--port-file", help="write the port listened on to this file once listening")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="do not draw a progress bar")


def node_config(args: argparse.Namespace) -> RunConfig:
    values = load_toml(args.config)
    for key in ("server_device", "out", "tensorboard", "progress"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    try:
        return RunConfig(**values)
    except TypeError as exc:
        raise ValueError(f"bad configuration in {args.config}: {exc}") from None


def execute(args: argparse.Namespace) -> int:
    from splitpipe.runtime.member import run_member
    from splitpipe.runtime.transport import TransportError

    if not args.timeout > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    config = node_config(args)
    setup = prepare(config)
    name = node_name(setup.topology, args.role, args.id)
    coordinator = coordinator_of(setup.plan)
    leads = name == coordinator
    if not leads and not args.coordinator:
        raise ValueError(f"{name} needs --coordinator HOST:PORT (where {coordinator} listens)")
    transport = _transport(args, name, setup.topology.links, None if leads else (coordinator, args.coordinator))
    with transport:
        transport.start()
        address = f"{_advertised_host(args)}:{transport.port}"
        if args.port_file:
            Path(args.port_file).write_text(f"{transport.port}\n")
        log.info("%s: listening on %s (reached at %s)", name, args.listen, address)
        speed = setup.topology.node(name).speed if args.emulate_speed else 1.0
        try:
            if leads:
                return _coordinate(setup, name, transport, address, args.timeout, speed)
            run_member(setup, name, transport, coordinator, address, timeout=args.timeout, speed=speed)
        except (RuntimeError, TransportError) as exc:
            print(f"splitpipe node {name}: error: {_first_line(exc)}", file=sys.stderr)
            return 1
    return 0


def _coordinate(setup: Setup, name: str, transport: Transport, address: str, timeout: float, speed: float) -> int:
    from splitpipe.runtime.coordinator import Coordinator

    config = setup.config
    with epoch_progress(config, f"{config.technique} (distributed)") as progress:
        result = Coordinator(setup, name, transport, address=address, timeout=timeout, speed=speed,
                             progress=progress).run()
    show_run(result.report, result.spans, config.out, "distributed, wall clock")
    return 0


def _transport(args: argparse.Namespace, name: str, links: Mapping[tuple[str, str], LinkSpec],
               coordinator: tuple[str, str] | None) -> GrpcTransport:
    from splitpipe.runtime.transport import GrpcTransport, TlsConfig, load_secret

    parse_address(args.listen, "--listen")
    peers = {}
    if coordinator is not None:
        parse_address(coordinator[1], "--coordinator")
        peers[coordinator[0]] = coordinator[1]
    tls_files = (args.tls_cert, args.tls_key, args.tls_ca)
    if any(tls_files) and not all(tls_files):
        raise ValueError("mutual TLS needs all of --tls-cert, --tls-key and --tls-ca")
    tls = TlsConfig(*(Path(p) for p in tls_files)) if all(tls_files) else None
    own_links = {dst: spec for (src, dst), spec in links.items() if src == name}
    return GrpcTransport(name, args.listen, peers, load_secret(args.secret_file), links=own_links, tls=tls)


def _advertised_host(args: argparse.Namespace) -> str:
    if args.advertise:
        return args.advertise
    host = args.listen.rpartition(":")[0]
    return socket.getfqdn() if host in ("0.0.0.0", "[::]", "::") else host


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
