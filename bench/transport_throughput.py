"""Benchmark (issue 4): GrpcTransport throughput on loopback, unshaped, beside a plain TCP socket.

    python bench/transport_throughput.py [--sizes-mib 1 16] [--total-mib 256] [--repeats 3]

For each tensor size, sends enough float32 tensors to make `--total-mib` from this process to
a receiving GrpcTransport in a child process, and times from the first send until the child's
"done" control message is back. The TCP baseline sends the same bytes with socket.sendall to a
thread that reads them with recv_into into one buffer: the ceiling for this host. Prints a
markdown table of the median MB/s (10^6 B/s).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import socket
import statistics
import threading
import time
from importlib.metadata import version
from multiprocessing.connection import Connection

import torch

from splitpipe.runtime.transport import GrpcTransport
from splitpipe.schedules.ir import Tag

SECRET = b"bench-secret"


def receiver(tx_address: str, conn: Connection) -> None:
    """Child process: count data messages; after each control {"count": n}, answer "done" at n."""
    with GrpcTransport("rx", "127.0.0.1:0", {"tx": tx_address}, SECRET) as rx:
        rx.start()
        conn.send(rx.address)
        expect, got = None, 0
        while True:
            message = rx.receive(120.0)
            if message is None or (message.control or {}).get("stop"):
                return
            if message.control is not None:
                expect = message.control["count"]
            else:
                got += 1
            if got == expect:
                rx.send_control("tx", {"done": got})
                expect, got = None, 0


def grpc_once(tx: GrpcTransport, tensor: torch.Tensor, count: int) -> float:
    """Seconds to move `count` copies of `tensor` from tx to the child and hear back."""
    tx.send_control("rx", {"count": count})
    start = time.perf_counter()
    for i in range(count):
        tx.send("rx", Tag("act", mb=i), tensor)
    reply = tx.receive(120.0)
    if reply is None or reply.control != {"done": count}:
        raise RuntimeError(f"gRPC benchmark: expected done={count}, got {reply}")
    return time.perf_counter() - start


def tcp_once(data: bytes, count: int) -> float:
    """Seconds to move `count` copies of `data` over a loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        done = threading.Event()

        def receive() -> None:
            conn, _ = server.accept()
            with conn:
                buffer = memoryview(bytearray(len(data)))
                for _ in range(count):
                    got = 0
                    while got < len(data):
                        n = conn.recv_into(buffer[got:])
                        if n == 0:
                            raise RuntimeError("TCP benchmark: connection closed early")
                        got += n
            done.set()

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        with socket.create_connection(server.getsockname()) as client:
            start = time.perf_counter()
            for _ in range(count):
                client.sendall(data)
            done.wait(60.0)
            elapsed = time.perf_counter() - start
        thread.join(5.0)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[1, 16], help="tensor sizes in MiB")
    parser.add_argument("--total-mib", type=int, default=256, help="MiB moved per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per cell; the median is shown")
    args = parser.parse_args()

    tx = GrpcTransport("tx", "127.0.0.1:0", {}, SECRET)
    tx.start()
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=receiver, args=(tx.address, child), daemon=True)
    process.start()
    rows = []
    try:
        tx.add_peer("rx", parent.recv())
        grpc_once(tx, torch.zeros(16), 4)   # open the streams before timing
        for mib in args.sizes_mib:
            tensor = torch.randn((mib << 20) // 4)
            data = tensor.numpy().tobytes()
            count = max(4, args.total_mib // mib)
            moved = count * len(data) / 1e6
            grpc_mbs = statistics.median(moved / grpc_once(tx, tensor, count) for _ in range(args.repeats))
            tcp_mbs = statistics.median(moved / tcp_once(data, count) for _ in range(args.repeats))
            rows.append((mib, count, grpc_mbs, tcp_mbs))
        tx.send_control("rx", {"stop": True})
        process.join(30.0)
    finally:
        tx.close()
        if process.is_alive():
            process.terminate()

    print(f"host: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
          f"grpcio {version('grpcio')}, torch {torch.__version__}")
    print("| tensor | messages | GrpcTransport MB/s | TCP socket MB/s | gRPC / TCP |")
    print("|---:|---:|---:|---:|---:|")
    for mib, count, grpc_mbs, tcp_mbs in rows:
        print(f"| {mib} MiB | {count} | {grpc_mbs:,.0f} | {tcp_mbs:,.0f} | {grpc_mbs / tcp_mbs:.2f} |")


if __name__ == "__main__":
    main()
