"""Benchmark (issue 13): CPU seconds each end spends per GB moved, SocketTransport against a plain TCP socket.

    python bench/transport_cpu.py [--sizes-mib 1 16] [--repeats 5] [--round-trips 2000]

On a host whose cores are shared with other work, wall-clock throughput moves by a factor of
several from run to run (docs/transport.md); the CPU time a process spends to move a GB
(user + system, getrusage) moves much less, and on busy cores it is what sets the pace. A child
process receives: through a SocketTransport, counting messages, or through a plain socket that
reads into one reused buffer. Each end reports its CPU seconds per GB; medians of `--repeats`,
transport and socket taking turns. Context switches per message are shown as well: the
transport used to hand every message from its reader thread to the thread that calls receive().
Last, the CPU each end spends per round trip of a 4 KiB tensor (`--round-trips` of them; the
child's transport sends it back, or a plain socket echoes the same bytes): what the small-message
latency costs, apart from how long the scheduler of a busy host keeps a woken process waiting.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import socket
import statistics
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

import torch

from splitpipe.runtime.transport import SocketTransport
from splitpipe.runtime.transport.memory import keep_freed_memory
from splitpipe.schedules.ir import Tag

SECRET = b"bench-secret"


def usage() -> tuple[float, int]:
    """CPU seconds and context switches of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nvcsw + r.ru_nivcsw


def _recv_exact(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if not n:
            raise ConnectionError("the sender went away")
        got += n


def child(conn: Connection) -> None:
    keep_freed_memory()   # as a node process does
    with SocketTransport("rx", "127.0.0.1:0", {}, SECRET) as rx, socket.create_server(("127.0.0.1", 0)) as server:
        rx.start()
        conn.send((rx.address, server.getsockname()[1]))
        rx.add_peer("tx", conn.recv())
        while (command := conn.recv())[0] != "stop":
            kind, size, count = command
            before = usage()
            if kind == "transport echo":
                for _ in range(count):
                    message = rx.receive(120.0)
                    if message is None or message.tag is None or message.payload is None:
                        raise RuntimeError("benchmark: a message did not arrive")
                    rx.send("tx", message.tag, message.payload)
            elif kind == "socket echo":
                sock, _ = server.accept()
                with sock:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    buffer = memoryview(bytearray(size))
                    for _ in range(count):
                        _recv_exact(sock, buffer)
                        sock.sendall(buffer)
            elif kind == "transport":
                for _ in range(count):
                    if rx.receive(120.0) is None:
                        raise RuntimeError("benchmark: a message did not arrive")
                rx.send_control("tx", {"done": count})
            else:
                sock, _ = server.accept()
                with sock:
                    buffer = memoryview(bytearray(size))
                    for _ in range(count):
                        _recv_exact(sock, buffer)
                    sock.sendall(b"!")
            after = usage()
            conn.send((after[0] - before[0], after[1] - before[1]))


def in_turns(conn: Connection, repeats: int, jobs: dict[str, tuple[str, int, int, Callable[[], None]]],
             ) -> Iterator[tuple[str, float, float, int]]:
    """Run each kind's job (what the child is told, bytes, count, our side) in turns with the others,
    `repeats` + 1 times; yield (kind, our CPU s, the child's CPU s, its switches) but for the first
    turn, which warms buffers up."""
    for turn in range(repeats + 1):
        for kind, (order, nbytes, count, job) in jobs.items():
            conn.send((order, nbytes, count))
            before = usage()[0]
            job()
            mine = usage()[0] - before
            theirs, switches = conn.recv()
            if turn:
                yield kind, mine, theirs, switches


def measure(conn: Connection, tx: SocketTransport, port: int, mib: int, repeats: int) -> dict[str, list[float]]:
    tensor = torch.randn((mib << 20) // 4)
    data, count = tensor.numpy().tobytes(), max(4, 128 // mib)
    gb = count * len(data) / 1e9

    def by_transport() -> None:
        for i in range(count):
            tx.send("rx", Tag("act", mb=i), tensor)
        if tx.receive(120.0) is None:
            raise RuntimeError("benchmark: the receiver did not confirm")

    def by_socket() -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            for _ in range(count):
                sock.sendall(data)
            if sock.recv(1) != b"!":
                raise RuntimeError("benchmark: the receiver did not confirm")

    out: dict[str, list[float]] = {}
    jobs = {"transport": ("transport", len(data), count, by_transport), "socket": ("socket", len(data), count, by_socket)}
    for kind, mine, theirs, switches in in_turns(conn, repeats, jobs):
        out.setdefault(f"{kind} sender", []).append(mine / gb)
        out.setdefault(f"{kind} receiver", []).append(theirs / gb)
        out.setdefault(f"{kind} receiver switches", []).append(switches / count)
    return out


def round_trips(conn: Connection, tx: SocketTransport, port: int, count: int, repeats: int) -> dict[str, list[float]]:
    """CPU microseconds per round trip of a 4 KiB tensor at each end, transport and plain socket taking turns."""
    tensor = torch.randn(1024)
    data = tensor.numpy().tobytes()

    def by_transport() -> None:
        for i in range(count):
            tx.send("rx", Tag("act", mb=i), tensor)
            if tx.receive(120.0) is None:
                raise RuntimeError("benchmark: an echo did not come back")

    def by_socket() -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffer = memoryview(bytearray(len(data)))
            for _ in range(count):
                sock.sendall(data)
                _recv_exact(sock, buffer)

    out: dict[str, list[float]] = {}
    jobs = {"transport": ("transport echo", len(data), count, by_transport),
            "socket": ("socket echo", len(data), count, by_socket)}
    for kind, mine, theirs, _ in in_turns(conn, repeats, jobs):
        out.setdefault(f"{kind} sender", []).append(mine / count * 1e6)
        out.setdefault(f"{kind} receiver", []).append(theirs / count * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="*", default=[1, 16], help="tensor sizes in MiB (none: round trips only)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per cell; the median is shown")
    parser.add_argument("--round-trips", type=int, default=2000, help="4 KiB round trips per measurement (0: none)")
    args = parser.parse_args()
    keep_freed_memory()
    context = multiprocessing.get_context("spawn")
    parent, child_end = context.Pipe()
    process = context.Process(target=child, args=(child_end,), daemon=True)
    process.start()
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"load average at start {load}; CPU seconds per GB (medians of {args.repeats})\n")
    print("| tensor | end | SocketTransport | plain socket | transport / socket | receiver switches per message |")
    print("|---|---|---:|---:|---:|---:|")
    with SocketTransport("tx", "127.0.0.1:0", {}, SECRET) as tx:
        tx.start()
        address, port = parent.recv()
        parent.send(tx.address)
        tx.add_peer("rx", address)
        for mib in args.sizes_mib:
            out = {key: statistics.median(values) for key, values in measure(parent, tx, port, mib, args.repeats).items()}
            for end in ("sender", "receiver"):
                ours, theirs = out[f"transport {end}"], out[f"socket {end}"]
                switches = (f"{out['transport receiver switches']:.1f} / {out['socket receiver switches']:.1f}"
                            if end == "receiver" else "")
                print(f"| {mib} MiB | {end} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f} | {switches} |")
        if args.round_trips:
            out = {key: statistics.median(values)
                   for key, values in round_trips(parent, tx, port, args.round_trips, args.repeats).items()}
            print("\nCPU microseconds per 4 KiB round trip (the sender sends and receives the echo; the receiver echoes)\n")
            print("| end | SocketTransport | plain socket | transport / socket |")
            print("|---|---:|---:|---:|")
            for end in ("sender", "receiver"):
                ours, theirs = out[f"transport {end}"], out[f"socket {end}"]
                print(f"| {end} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.1f} |")
        parent.send(("stop", 0, 0))
        process.join(30.0)


if __name__ == "__main__":
    main()
