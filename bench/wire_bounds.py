"""Probe (issue 12): what idle streams and header-heavy state dicts cost a live node, on loopback.

    PYTHONPATH=. python bench/wire_bounds.py

1. 300 idle authenticated streams on separate connections under 75 names (4 each), then a
   legitimate node sends one control message: how many streams the node holds, how many were
   refused, whether the legitimate message arrives.
2. Five state dicts of 4,096 empty tensors (accepted) and five of 300,000 (refused), built before
   measuring: the node's RSS before and after, and the time to take them.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator

import grpc

from splitpipe.runtime.transport import GrpcTransport
from splitpipe.runtime.transport.limits import MAX_TENSORS
from splitpipe.runtime.transport.proto.splitpipe_pb2 import DataHeader as ProtoDataHeader
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Frame as ProtoFrame
from splitpipe.runtime.transport.proto.splitpipe_pb2 import TensorHeader as ProtoTensorHeader
from splitpipe.runtime.transport.proto.splitpipe_pb2_grpc import LinkStub as ProtoLinkStub
from splitpipe.runtime.transport.security import auth_metadata

SECRET = b"bounds-secret"


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024


def idle_streams(rx: GrpcTransport, count: int) -> None:
    release = threading.Event()

    def idle() -> Iterator[ProtoFrame]:
        release.wait(60)
        yield from ()

    channels = [grpc.insecure_channel(rx.address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(count)]
    calls = [ProtoLinkStub(ch).Stream.future(idle(), metadata=auth_metadata(SECRET, f"hog{i // 4}"), timeout=60)
             for i, ch in enumerate(channels)]
    time.sleep(3)
    refused = sum(1 for c in calls if c.done() and c.exception() is not None)
    start = time.perf_counter()
    with GrpcTransport("device0", "127.0.0.1:0", {"rx": rx.address}, SECRET, connect_timeout=5) as device:
        device.send_control("rx", {"hello": 1})
        arrived = rx.receive(5.0)
    print(f"{count} idle streams: node holds {sum(rx._servicer.open_streams().values())}, refused {refused}; "
          f"a legitimate node's message {'arrived' if arrived else 'did not arrive'} "
          f"({time.perf_counter() - start:.2f} s)")
    release.set()
    for ch in channels:
        ch.close()


def state_dicts(rx: GrpcTransport) -> None:
    def header(n: int, message: int) -> ProtoFrame:
        head = ProtoDataHeader(state_dict=True,
                               tensors=[ProtoTensorHeader(key=str(i), dtype="float32", shape=[0]) for i in range(n)])
        head.tag.kind = "weights"
        return ProtoFrame(message=message, data=head, last=True)

    for n in (MAX_TENSORS, 300_000):
        frames = [header(n, m) for m in range(1, 6)]
        before, start = rss_mib(), time.perf_counter()
        with grpc.insecure_channel(rx.address) as channel:
            ack = ProtoLinkStub(channel).Stream(iter(frames), metadata=auth_metadata(SECRET, "mallory"), timeout=60)
        took = time.perf_counter() - start
        received = list(iter(lambda: rx.receive(0.5), None))
        peak = rss_mib()
        del received, frames
        gc.collect()
        print(f"5 state dicts of {n:,} empty tensors: {ack.messages} delivered in {took:.2f} s; node RSS "
              f"{before:.0f} -> {peak:.0f} MiB, {rss_mib():.0f} MiB once they are dropped")


def main() -> None:
    with GrpcTransport("rx", "127.0.0.1:0", {}, SECRET) as rx:
        rx.start()
        state_dicts(rx)
        idle_streams(rx, 300)


if __name__ == "__main__":
    main()
