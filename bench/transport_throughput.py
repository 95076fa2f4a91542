"""Benchmark (issue 13): the socket transport against plain sockets on loopback, with and without TLS.

    python bench/transport_throughput.py [--sizes-mib 1 16] [--total-mib 256] [--repeats 5] [--grpc] [--json]

A child process receives. Throughput: this process sends enough float32 tensors of each size
to make `--total-mib` to a SocketTransport in the child and times from the first send until
the child's "done" control message is back; the baseline sends the same bytes with
socket.sendall to a plain socket in the child that reads them with recv_into into one buffer
and answers one byte when it has them all (over TLS: Python's ssl on both ends, the same
mutual-TLS contexts as the transport). Latency: round trips of a `--small-kib` tensor (of each size
given) that the child's transport sends straight back, against a plain socket that echoes the same bytes,
and against the least a Python transport of tensors does (a header, the body read into its own
buffer, a tensor over it, one sendmsg back): what no Python transport gets below. The two
processes run on two different CPUs by default (`--cpus`): on a VM where the baseline and the
transport are placed differently, the placement decides the latency ratio, not the transport.
Every cell is measured `--repeats` times, transport and baseline taking turns, and the median
shown; each tensor size first has one untimed round of both (the transport's snapshot pool then
holds buffers of that size, as in training after the first steps). Both processes keep freed memory for reuse, as node processes do (transport/memory.py). `--grpc` adds the GrpcTransport for comparison. `--json` prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import multiprocessing
import os
import platform
import socket
import ssl
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from splitpipe.runtime.transport import GrpcTransport, SocketTransport, TlsConfig, Transport
from splitpipe.runtime.transport.memory import keep_freed_memory
from splitpipe.runtime.transport.socket_transport import _contexts
from splitpipe.schedules.ir import Tag

SECRET = b"bench-secret"


# -- certificates -------------------------------------------------------------------------------
def make_tls(folder: Path) -> TlsConfig:
    """A throwaway CA and one certificate for 127.0.0.1, nodes "tx" and "rx", that both ends use (mutual TLS)."""
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("bench-ca")).issuer_name(name("bench-ca"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("node")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("tx"), x509.DNSName("rx")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "node.pem").write_bytes(cert.public_bytes(pem))
    (folder / "node.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return TlsConfig(folder / "node.pem", folder / "node.key", folder / "ca.pem")


# -- the child: receivers and echoes --------------------------------------------------------------
def _serve_transport(rx: Transport, conn: Connection) -> None:
    """Count data messages and answer "done"; or echo them back; until {"stop"}."""
    conn.send(rx.address)
    expect, got, echo = None, 0, False
    while True:
        message = rx.receive(300.0)
        if message is None or (message.control or {}).get("stop"):
            return
        if message.control is not None:
            expect, echo, got = message.control.get("count"), bool(message.control.get("echo")), 0
            if echo:
                rx.send_control("tx", {"ready": True})
            continue
        if echo:
            rx.send("tx", message.tag, message.payload)
            continue
        got += 1
        if got == expect:
            rx.send_control("tx", {"done": got})
            expect, got = None, 0


def _transport_service(kind: str, tls: TlsConfig | None, tx_address: str, conn: Connection) -> None:
    rx: Transport = (SocketTransport("rx", "127.0.0.1:0", {"tx": tx_address}, SECRET, tls=tls) if kind == "socket"
                     else GrpcTransport("rx", "127.0.0.1:0", {"tx": tx_address}, SECRET, tls=tls))
    with rx:
        rx.start()
        _serve_transport(rx, conn)


def _plain_server(context: ssl.SSLContext | None, conn: Connection, serve: Callable[[socket.socket], None]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        conn.send(server.getsockname()[1])
        sock, _ = server.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:
            sock = context.wrap_socket(sock, server_side=True)
        with sock:
            serve(sock)


def _recv_exact(sock: socket.socket, view: memoryview) -> bool:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            return False
        got += n
    return True


# The least any Python transport of tensors does per message, for scale: one header (body bytes,
# micro-batch), the body read into its own buffer, a tensor over it, a tag; one sendmsg to send.
FRAME = struct.Struct("<Iq")


def _send_framed(sock: socket.socket, tag: Tag, tensor: torch.Tensor) -> None:
    body = tensor.numpy().data.cast("B")
    sock.sendmsg([FRAME.pack(len(body), tag.mb), body])


def _read_framed(sock: socket.socket, head: memoryview) -> tuple[Tag, torch.Tensor] | None:
    if not _recv_exact(sock, head):
        return None
    size, mb = FRAME.unpack(head)
    body = bytearray(size)
    if not _recv_exact(sock, memoryview(body)):
        return None
    return Tag("act", mb=mb), torch.frombuffer(body, dtype=torch.float32)


def child(conn: Connection, tls: TlsConfig, cpus: set[int] | None = None) -> None:
    if cpus is not None:
        os.sched_setaffinity(0, cpus)   # before any thread starts: they all inherit it
    keep_freed_memory()   # as a node process does (runtime/entry.py)
    server_context = _contexts(tls)[0]
    while True:
        command = conn.recv()
        kind, secure = command[0], command[1]
        context = server_context if secure else None
        if kind == "stop":
            return
        if kind in ("socket", "grpc"):   # served by a thread, so that plain sockets can take turns with it
            threading.Thread(target=_transport_service, args=(kind, tls if secure else None, command[2], conn),
                             daemon=True).start()
        elif kind == "sink":
            size, count = command[2], command[3]

            def sink(sock: socket.socket, size: int = size, count: int = count) -> None:
                buffer = memoryview(bytearray(size))
                for _ in range(count):
                    if not _recv_exact(sock, buffer):
                        return
                sock.sendall(b"!")
            _plain_server(context, conn, sink)
        elif kind == "echo":
            size = command[2]

            def echo(sock: socket.socket, size: int = size) -> None:
                buffer = memoryview(bytearray(size))
                while _recv_exact(sock, buffer):
                    sock.sendall(buffer)
            _plain_server(context, conn, echo)
        elif kind == "framed":
            def framed(sock: socket.socket) -> None:
                head = memoryview(bytearray(FRAME.size))
                while (message := _read_framed(sock, head)) is not None:
                    _send_framed(sock, *message)
            _plain_server(None, conn, framed)


# -- the measurements ---------------------------------------------------------------------------
def _median_trip(count: int, trip: Callable[[int], Any], echoed: Callable[[int, Any], bool]) -> float:
    """Median seconds of `trip(i)` for i < count; each reply is checked with `echoed` after it was timed."""
    times = []
    for i in range(count):
        start = time.perf_counter()
        reply = trip(i)
        times.append(time.perf_counter() - start)
        if not echoed(i, reply):
            raise RuntimeError(f"benchmark: expected the echo of round trip {i}, got {reply}")
    return statistics.median(times)


class Bench:
    def __init__(self, conn: Connection, tls: TlsConfig) -> None:
        self.conn, self.tls = conn, tls
        self.client_context = _contexts(tls)[1]

    def transport(self, kind: str, secure: bool) -> Transport:
        tls = self.tls if secure else None
        tx: Transport = (SocketTransport("tx", "127.0.0.1:0", {}, SECRET, tls=tls) if kind == "socket" else
                         GrpcTransport("tx", "127.0.0.1:0", {}, SECRET, tls=tls))
        tx.start()
        self.conn.send((kind, secure, tx.address))
        tx.add_peer("rx", self.conn.recv())
        self.throughput(tx, torch.zeros(16), 4)   # open the connections before timing
        return tx

    @staticmethod
    def throughput(tx: Transport, tensor: torch.Tensor, count: int) -> float:
        tx.send_control("rx", {"count": count})
        start = time.perf_counter()
        for i in range(count):
            tx.send("rx", Tag("act", mb=i), tensor)
        reply = tx.receive(300.0)
        if reply is None or reply.control != {"done": count}:
            raise RuntimeError(f"benchmark: expected done={count}, got {reply}")
        return time.perf_counter() - start

    @staticmethod
    def round_trips(tx: Transport, tensor: torch.Tensor, count: int) -> float:
        """Median seconds of one round trip of `tensor` through the child's transport."""
        tx.send_control("rx", {"echo": True})
        ready = tx.receive(60.0)
        if ready is None or ready.control != {"ready": True}:
            raise RuntimeError(f"benchmark: expected the echo to be ready, got {ready}")
        def trip(i: int) -> Any:
            tx.send("rx", Tag("act", mb=i), tensor)
            return tx.receive(60.0)
        seconds = _median_trip(count, trip, lambda i, reply: reply is not None and reply.tag == Tag("act", mb=i))
        tx.send_control("rx", {"count": None})
        return seconds

    def stop(self, tx: Transport) -> None:
        tx.send_control("rx", {"stop": True})
        tx.close()

    def plain(self, secure: bool, command: tuple) -> socket.socket:
        self.conn.send((command[0], secure, *command[1:]))
        sock = socket.create_connection(("127.0.0.1", self.conn.recv()))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.client_context.wrap_socket(sock, server_hostname="127.0.0.1") if secure else sock

    def socket_throughput(self, secure: bool, data: bytes, count: int) -> float:
        with self.plain(secure, ("sink", len(data), count)) as sock:
            start = time.perf_counter()
            for _ in range(count):
                sock.sendall(data)
            if sock.recv(1) != b"!":
                raise RuntimeError("socket benchmark: the receiver did not confirm")
            return time.perf_counter() - start

    def framed_round_trips(self, tensor: torch.Tensor, count: int) -> float:
        """Median seconds of one round trip through the least a Python tensor transport does (FRAME)."""
        with self.plain(False, ("framed",)) as sock:
            head = memoryview(bytearray(FRAME.size))

            def trip(i: int) -> Any:
                _send_framed(sock, Tag("act", mb=i), tensor)
                return _read_framed(sock, head)
            return _median_trip(count, trip, lambda i, reply: reply is not None and reply[0].mb == i)

    def socket_round_trips(self, secure: bool, data: bytes, count: int) -> float:
        with self.plain(secure, ("echo", len(data))) as sock:
            buffer = memoryview(bytearray(len(data)))

            def trip(i: int) -> Any:
                sock.sendall(data)
                return _recv_exact(sock, buffer)
            return _median_trip(count, trip, lambda i, whole: whole is True)


def measure(args: argparse.Namespace, bench: Bench) -> dict:
    out: dict = {}
    for secure in (False, True):
        wire = "tls" if secure else "tcp"
        tx = bench.transport("socket", secure)
        try:
            for mib in args.sizes_mib:
                tensor = torch.randn((mib << 20) // 4)
                data = tensor.numpy().tobytes()
                count = max(4, args.total_mib // mib)
                moved = count * len(data) / 1e6
                ours, theirs = [], []
                bench.throughput(tx, tensor, count)   # a round not timed: the pools hold buffers of this size,
                bench.socket_throughput(secure, data, count)   # as a training run's do after its first steps
                for _ in range(args.repeats):   # taking turns: both see the same load
                    ours.append(moved / bench.throughput(tx, tensor, count))
                    theirs.append(moved / bench.socket_throughput(secure, data, count))
                out[f"{wire}_transport_MBps_{mib}MiB"] = statistics.median(ours)
                out[f"{wire}_socket_MBps_{mib}MiB"] = statistics.median(theirs)
                out[f"{wire}_ratio_{mib}MiB"] = statistics.median(ours) / statistics.median(theirs)
            for kib in args.small_kib if not secure else ():
                small = torch.randn(kib * 256)
                data = small.numpy().tobytes()
                ours, theirs, least = [], [], []
                for _ in range(args.repeats):
                    ours.append(bench.round_trips(tx, small, args.round_trips))
                    theirs.append(bench.socket_round_trips(False, data, args.round_trips))
                    least.append(bench.framed_round_trips(small, args.round_trips))
                out[f"transport_rtt_us_{kib}KiB"] = statistics.median(ours) * 1e6
                out[f"socket_rtt_us_{kib}KiB"] = statistics.median(theirs) * 1e6
                out[f"framed_rtt_us_{kib}KiB"] = statistics.median(least) * 1e6
                out[f"framed_ratio_{kib}KiB"] = statistics.median(least) / statistics.median(theirs)
                out[f"latency_ratio_{kib}KiB"] = statistics.median(ours) / statistics.median(theirs)
                if kib == args.small_kib[0]:   # the keys: the first size
                    out["small_transport_rtt_us"] = out[f"transport_rtt_us_{kib}KiB"]
                    out["small_socket_rtt_us"] = out[f"socket_rtt_us_{kib}KiB"]
                    out["small_latency_ratio"] = out[f"latency_ratio_{kib}KiB"]
        finally:
            bench.stop(tx)
        if args.grpc:
            tx = bench.transport("grpc", secure)
            try:
                for mib in args.sizes_mib:
                    tensor = torch.randn((mib << 20) // 4)
                    count = max(4, args.total_mib // mib)
                    moved = count * tensor.numel() * 4 / 1e6
                    out[f"{wire}_grpc_MBps_{mib}MiB"] = statistics.median(
                        moved / bench.throughput(tx, tensor, count) for _ in range(args.repeats))
            finally:
                bench.stop(tx)
    return out


def table(args: argparse.Namespace, out: dict) -> str:
    lines = [f"host: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
             f"{ssl.OPENSSL_VERSION}, grpcio {version('grpcio')}, torch {torch.__version__}",
             f"medians of {args.repeats}; {args.total_mib} MiB per throughput measurement",
             "",
             "| wire | tensor | SocketTransport MB/s | plain socket MB/s | transport / socket |"
             + (" GrpcTransport MB/s |" if args.grpc else ""),
             "|---|---:|---:|---:|---:|" + ("---:|" if args.grpc else "")]
    for wire in ("tcp", "tls"):
        for mib in args.sizes_mib:
            row = (f"| {wire.upper()} | {mib} MiB | {out[f'{wire}_transport_MBps_{mib}MiB']:,.0f} | "
                   f"{out[f'{wire}_socket_MBps_{mib}MiB']:,.0f} | {out[f'{wire}_ratio_{mib}MiB']:.2f} |")
            if args.grpc:
                row += f" {out[f'{wire}_grpc_MBps_{mib}MiB']:,.0f} |"
            lines.append(row)
    lines += ["", f"round trips, processes placed: {args.cpus}", "",
              "| small message | SocketTransport round trip | plain socket round trip | transport / socket "
              "| least framing round trip | least framing / socket |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {kib} KiB over TCP | {out[f'transport_rtt_us_{kib}KiB']:.0f} us | "
              f"{out[f'socket_rtt_us_{kib}KiB']:.0f} us | {out[f'latency_ratio_{kib}KiB']:.2f} | "
              f"{out[f'framed_rtt_us_{kib}KiB']:.0f} us | {out[f'framed_ratio_{kib}KiB']:.2f} |"
              for kib in args.small_kib]
    return "\n".join(lines)


def placement(cpus: str) -> tuple[set[int] | None, set[int] | None]:
    """(this process's CPUs, the child's) for --cpus; None: wherever the scheduler puts it.

    On a VM the choice moves a round trip more than anything the transport does: a process
    woken on another CPU that was idle pays that CPU's wake-up (here about 55 us each way, a bare
    echo 125-140 us against 27 us on one CPU), so baseline and transport are only comparable
    when both run with the same placement; "free" lets the scheduler give them different ones.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if cpus == "free":
        return None, None
    if cpus == "apart":
        if len(allowed) < 2:
            raise SystemExit(f"--cpus apart needs two CPUs; this process may use only {allowed}")
        return {allowed[0]}, {allowed[1]}
    return {allowed[0]}, {allowed[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[1, 16], help="tensor sizes in MiB")
    parser.add_argument("--total-mib", type=int, default=256, help="MiB moved per throughput measurement")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per cell; the median is shown")
    parser.add_argument("--small-kib", type=int, nargs="+", default=[4],
                        help="sizes of the round-trip messages (KiB); the first gives the small_* figures")
    parser.add_argument("--round-trips", type=int, default=200, help="round trips per latency measurement")
    parser.add_argument("--grpc", action="store_true", help="also measure GrpcTransport (slow)")
    parser.add_argument("--cpus", choices=("apart", "same", "free"), default=None,
                        help="where the two processes run: this one on the first CPU and the child on the second "
                             "(apart, the default with two CPUs or more: each wake-up crosses CPUs, as between two "
                             "machines), both on the first CPU (same; the default on one CPU), or wherever the "
                             "scheduler puts them (free: baseline and transport may then be placed differently)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    args.cpus = args.cpus or ("apart" if len(os.sched_getaffinity(0)) > 1 else "same")
    mine, theirs = placement(args.cpus)
    if mine is not None:
        os.sched_setaffinity(0, mine)
    keep_freed_memory()   # as a node process does (runtime/entry.py)
    with tempfile.TemporaryDirectory(prefix="splitpipe-bench-") as tmp:
        tls = make_tls(Path(tmp))
        context = multiprocessing.get_context("spawn")
        parent, child_end = context.Pipe()
        process = context.Process(target=child, args=(child_end, tls, theirs), daemon=True)
        process.start()
        try:
            out = measure(args, Bench(parent, tls))
            parent.send(("stop", False))
            process.join(30.0)
        finally:
            if process.is_alive():
                process.terminate()
    print(json.dumps(out | {"cpus": args.cpus}, sort_keys=True) if args.json else table(args, out))


if __name__ == "__main__":
    main()
