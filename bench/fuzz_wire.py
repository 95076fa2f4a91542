"""Fuzzer (issues 12, 13): malformed frames must become CodecErrors, on the codecs and on live nodes' sockets.

    python bench/fuzz_wire.py --cases 100000 [--live-cases 5000] [--seed 0] [--wire grpc|socket|both]

Each case is a malformed message (random frames, a valid message mutated, or one of the
targeted inputs of issue 12) followed by a valid sentinel message. The codec decodes each case
on its own with `strict=True`: an exception other than CodecError is a crash, and a sentinel
that does not come out is a lost message. The first `--live-cases` cases are then streamed,
500 to a stream, to a GrpcTransport in this process over loopback: each stream must end OK
and deliver exactly what the codec delivered. Prints cases, rejected, crashes, lost, the
slowest case and the peak RSS of the process. Exit 1 on any crash or loss.

The socket wire (`--wire socket`, on by default beside gRPC) gets the same treatment: random
messages, mutated valid ones and the targeted inputs, each with a prefix whose lengths match
its bytes, decoded one by one by wire.read_message with `strict=True`, then the first
`--live-cases` written back to back, after a sentinel each, to a live SocketTransport over
one authenticated connection, which must deliver exactly the sentinels and what decoded.
"""

from __future__ import annotations

import argparse
import random
import resource
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable

import grpc
import torch

from splitpipe.runtime.transport import GrpcTransport, SocketTransport
from splitpipe.runtime.transport import wire as sw
from splitpipe.runtime.transport.channel import Connection
from splitpipe.runtime.transport.codec import (
    CodecError,
    control_to_frames,
    messages_from_frames,
    payload_to_frames,
)
from splitpipe.runtime.transport.handshake import SharedSecret, dial_handshake
from splitpipe.runtime.transport.proto.splitpipe_pb2 import ControlHeader as ProtoControlHeader
from splitpipe.runtime.transport.proto.splitpipe_pb2 import DataHeader as ProtoDataHeader
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Frame as ProtoFrame
from splitpipe.runtime.transport.proto.splitpipe_pb2 import TensorHeader as ProtoTensorHeader
from splitpipe.runtime.transport.proto.splitpipe_pb2_grpc import LinkStub as ProtoLinkStub
from splitpipe.runtime.transport.security import auth_metadata
from splitpipe.schedules.ir import MESSAGE_KINDS, Tag

SECRET = b"fuzz-secret"
LIMIT, CONTROL_LIMIT, CHUNK = 1 << 20, 1 << 20, 1 << 12
INTS = [0, 1, 2, 3, 7, 255, 4096, -1, -2, 2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 1, -(2**63)]
UINTS = [0, 1, 2, 24, 4096, 2**32, 2**62, 2**64 - 1]
DTYPE_NAMES = ["float32", "float64", "float16", "bfloat16", "int64", "int8", "uint8", "bool", "object", "", "complex64"]
KINDS = sorted(MESSAGE_KINDS) + ["", "evil", "act" * 20]
Case = list[ProtoFrame]


def valid(rng: random.Random, message: int) -> Case:
    """A well-formed tensor, state dict or control message."""
    pick = rng.randrange(3)
    if pick == 0:
        shape = [rng.randrange(0, 5) for _ in range(rng.randrange(0, 4))]
        return payload_to_frames(message, Tag("act", 1, 2, 3, 4), torch.ones(shape), rng.choice([8, 64, CHUNK]))
    if pick == 1:
        sd = {f"layer{i}.weight": torch.zeros(rng.randrange(0, 6), dtype=torch.int16) for i in range(rng.randrange(1, 5))}
        return payload_to_frames(message, Tag("weights"), sd, rng.choice([4, 16, CHUNK]))
    return control_to_frames(message, {"type": "x", "v": [1, {"a": None}], "s": "é"}, rng.choice([3, 64]))


def random_frame(rng: random.Random) -> ProtoFrame:
    frame = ProtoFrame(message=rng.choice([1, 2, rng.randrange(2**64)]), index=rng.choice([0, 0, 1, 2, 2**32 - 1]),
                       last=rng.random() < 0.5)
    body = rng.randrange(4)
    if body == 0:
        tensors = [ProtoTensorHeader(key=rng.choice(["", "w", "w"]), dtype=rng.choice(DTYPE_NAMES),
                                     shape=[rng.choice(INTS) for _ in range(rng.randrange(0, 6))],
                                     nbytes=rng.choice(UINTS)) for _ in range(rng.randrange(0, 4))]
        frame.data.CopyFrom(ProtoDataHeader(state_dict=rng.random() < 0.5, tensors=tensors))
        frame.data.tag.kind, frame.data.tag.step = rng.choice(KINDS), rng.choice(INTS)
    elif body == 1:
        frame.control.CopyFrom(ProtoControlHeader(nbytes=rng.choice(UINTS)))
    elif body == 2:
        frame.chunk = rng.randbytes(rng.choice([0, 1, 8, 100]))
    return frame


def mutate(rng: random.Random, frames: Case) -> Case:
    """One to three edits of a valid message: drop, repeat, swap, re-number, bit-flip, or a header field."""
    frames = [ProtoFrame.FromString(f.SerializeToString()) for f in frames]
    for _ in range(rng.randrange(1, 4)):
        i, edit = rng.randrange(len(frames)), rng.randrange(7)
        if edit == 0 and len(frames) > 1:
            del frames[i]
        elif edit == 1:
            frames.insert(i, frames[i])
        elif edit == 2:
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        elif edit == 3:
            setattr(frames[i], rng.choice(["index", "last"]), rng.choice([0, 1, 5]))
        elif edit == 4:
            raw = bytearray(frames[i].SerializeToString())
            for _ in range(rng.randrange(1, 4)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            try:
                frames[i] = ProtoFrame.FromString(bytes(raw))
            except Exception:   # gRPC would not deliver an unparsable frame: keep the original
                pass
        elif edit == 5 and frames[0].WhichOneof("body") == "data" and frames[0].data.tensors:
            tensor = rng.choice(frames[0].data.tensors)
            field = rng.choice(["shape", "nbytes", "dtype"])
            if field == "shape":
                tensor.shape.append(rng.choice(INTS))
            elif field == "nbytes":
                tensor.nbytes = rng.choice(UINTS)
            else:
                tensor.dtype = rng.choice(DTYPE_NAMES)
        elif edit == 6 and frames[0].WhichOneof("body") == "control" and len(frames) > 1:
            frames[-1].chunk = rng.choice([b"[" * 3000, b"NaN", b"9" * 5000, b"\xff", b"{}" * 3]) + frames[-1].chunk
    return frames


def _control(data: bytes) -> Case:
    return [ProtoFrame(message=1, control=ProtoControlHeader(nbytes=len(data))),
            ProtoFrame(message=1, index=1, chunk=data, last=True)]


def _header(shape: list[int], nbytes: int, dtype: str = "float32") -> Case:
    head = ProtoDataHeader(tensors=[ProtoTensorHeader(dtype=dtype, shape=shape, nbytes=nbytes)])
    head.tag.kind = "act"
    return [ProtoFrame(message=1, data=head, last=True)]


def _many_tensors(n: int) -> Case:
    head = ProtoDataHeader(state_dict=True, tensors=[ProtoTensorHeader(key=str(i), dtype="bool") for i in range(n)])
    head.tag.kind = "weights"
    return [ProtoFrame(message=1, data=head, last=True)]


TARGETED: dict[str, Callable[[], Case]] = {
    "json nested 5,000 deep": lambda: _control(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "json 5,000-digit integer": lambda: _control(b'{"a":' + b"9" * 5000 + b"}"),
    "json NaN": lambda: _control(b'{"a":NaN}'),
    "shape [0, 2**62, 2**62]": lambda: _header([0, 2**62, 2**62], 0),
    "shape of 64 dims": lambda: _header([1] * 64, 4),
    "shape product 2**64 + 4 wraps to 4": lambda: _header([2**32, 2**32 + 1], 4, "uint8"),
    "400,000 empty tensors": lambda: _many_tensors(400_000),
    "bool bytes of 2": lambda: [*_header([3], 3, "bool")[:1], ProtoFrame(message=1, index=1, chunk=b"\x02\x00\x01",
                                                                         last=True)],
}


def make_case(rng: random.Random, k: int) -> tuple[str, Case]:
    names = list(TARGETED)
    if k < len(names):
        return names[k], TARGETED[names[k]]()
    if rng.random() < 0.5:
        return "random", [random_frame(rng) for _ in range(rng.randrange(1, 5))]
    return "mutated", mutate(rng, valid(rng, 1))


def sentinel(message: int, k: int) -> Case:
    return payload_to_frames(message, Tag("act", mb=k), torch.arange(3.0), 8)


def decode(case: Case) -> tuple[int, int]:
    """(messages rejected, messages delivered) of a case; raises what the codec should not."""
    out = list(messages_from_frames(case, LIMIT, CONTROL_LIMIT, strict=True))
    return sum(isinstance(o, CodecError) for o in out), sum(not isinstance(o, CodecError) for o in out)


def renumber(case: Case, k: int) -> Case:
    """The case with message numbers unique to it (equal ones kept equal), so cases sharing a live stream stay apart."""
    out = [ProtoFrame.FromString(f.SerializeToString()) for f in case]
    numbers: dict[int, int] = {}
    for f in out:
        f.message = k * 64 + numbers.setdefault(f.message, len(numbers))
    return out


def live(cases: list[Case], expected: int, per_stream: int = 500) -> tuple[int, list[str]]:
    """Stream `cases` to a live node; (messages delivered, problems)."""
    problems, delivered = [], 0
    with GrpcTransport("rx", "127.0.0.1:0", {}, SECRET, max_message_bytes=LIMIT) as rx:
        rx.start()
        with grpc.insecure_channel(rx.address) as channel:
            stub = ProtoLinkStub(channel)
            for start in range(0, len(cases), per_stream):
                frames = [f for case in cases[start:start + per_stream] for f in case]
                try:
                    delivered += stub.Stream(iter(frames), metadata=auth_metadata(SECRET, "fuzz"), timeout=300).messages
                except grpc.RpcError as exc:
                    problems.append(f"stream of cases {start}..: {exc.code()} {exc.details()}")
                while rx.receive(0) is not None:
                    pass
    if delivered != expected:
        problems.append(f"live node delivered {delivered} messages, the codec {expected}")
    return delivered, problems


# -- the socket wire ------------------------------------------------------------------------------
def socket_valid(rng: random.Random) -> bytes:
    frames = valid(rng, 1)
    if frames[0].WhichOneof("body") == "control":
        return b"".join(sw.encode_control({"type": "x", "v": [1, {"a": None}], "s": "é"}))
    shape = [rng.randrange(0, 5) for _ in range(rng.randrange(0, 4))]
    payload = (torch.ones(shape) if rng.random() < 0.5 else
               {f"l{i}.w": torch.zeros(rng.randrange(0, 6), dtype=torch.int16) for i in range(rng.randrange(1, 5))})
    return b"".join(bytes(b) for b in sw.encode_data(Tag("act", 1, 2, 3, 4), payload)[0])


def framed(kind: int, head: bytes, body: bytes) -> bytes:
    return sw.PREFIX.pack(kind, len(head), len(body)) + head + body


def socket_random(rng: random.Random) -> bytes:
    kind = rng.choice([sw.DATA, sw.DATA, sw.CONTROL, 0, 4, 255])
    head = rng.randbytes(rng.choice([0, 1, 5, 40, 60, 200]))
    if rng.random() < 0.5 and kind == sw.DATA:   # a plausible header with hostile fields
        specs = [sw.TensorSpec(rng.choice(["", "w", "w"]), rng.choice(list(sw.DTYPE_CODES)),
                               [abs(rng.choice(INTS)) % 2**63 for _ in range(rng.randrange(0, 6))], 0)
                 for _ in range(rng.randrange(0, 4))]
        head = sw.encode_header(Tag(rng.choice(KINDS[:-2]) or "act", step=rng.choice(INTS)), rng.random() < 0.5, specs)
    return framed(kind, head, rng.randbytes(rng.choice([0, 1, 8, 24, 100])))


def socket_mutate(rng: random.Random, message: bytes) -> bytes:
    """Bit-flips, cuts and growths of a valid message's header and body; the prefix re-made to fit."""
    kind, head_len, _ = sw.PREFIX.unpack_from(message)
    head, body = bytearray(message[13:13 + head_len]), bytearray(message[13 + head_len:])
    for _ in range(rng.randrange(1, 4)):
        part = head if (head and rng.random() < 0.7) else body
        edit = rng.randrange(3)
        if edit == 0 and part:
            part[rng.randrange(len(part))] ^= 1 << rng.randrange(8)
        elif edit == 1 and part:
            del part[rng.randrange(len(part)):]
        else:
            part.extend(rng.randbytes(rng.choice([1, 8])))
    return framed(kind, bytes(head), bytes(body))


def _socket_header(shape: list[int], dtype: str = "float32", count: int = 1, body: bytes = b"") -> bytes:
    specs = [sw.TensorSpec(str(i) if count > 1 else "", dtype, shape, 0) for i in range(count)]
    return framed(sw.DATA, sw.encode_header(Tag("weights" if count > 1 else "act"), count > 1, specs), body)


SOCKET_TARGETED: dict[str, Callable[[], bytes]] = {
    "json nested 5,000 deep": lambda: framed(sw.CONTROL, b"", b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "json 5,000-digit integer": lambda: framed(sw.CONTROL, b"", b'{"a":' + b"9" * 5000 + b"}"),
    "json NaN": lambda: framed(sw.CONTROL, b"", b'{"a":NaN}'),
    "shape [0, 2**62, 2**62]": lambda: _socket_header([0, 2**62, 2**62]),
    "shape product 2**64 + 4 wraps to 4": lambda: _socket_header([2**32, 2**32 + 1], "uint8", body=b"x" * 4),
    "400,000 empty tensors": lambda: _socket_header([0], "bool", 400_000),
    "bool bytes of 2": lambda: _socket_header([3], "bool", body=b"\x02\x00\x01"),
    "header over the limit": lambda: framed(sw.DATA, bytes((1 << 20) + 1), b""),
    "body over the limit": lambda: _socket_header([1 << 19], body=bytes(1 << 21)),
}


def socket_case(rng: random.Random, k: int) -> tuple[str, bytes]:
    names = list(SOCKET_TARGETED)
    if k < len(names):
        return names[k], SOCKET_TARGETED[names[k]]()
    if rng.random() < 0.5:
        return "random", socket_random(rng)
    return "mutated", socket_mutate(rng, socket_valid(rng))


class _Bytes:
    """A reader over bytes (wire.Reader), as a socket's buffered reader would give them."""

    def __init__(self, data: bytes) -> None:
        self._view, self._at = memoryview(data), 0

    def readinto(self, buffer: memoryview) -> int:
        n = min(len(buffer), len(self._view) - self._at)
        buffer[:n] = self._view[self._at:self._at + n]
        self._at += n
        return n

    def close(self) -> None:
        pass


def socket_decode(data: bytes) -> tuple[int, int]:
    reader, rejected, delivered = _Bytes(data), 0, 0
    while True:
        try:
            item = sw.read_message(reader, LIMIT, CONTROL_LIMIT, strict=True)
        except sw.Ended:
            return rejected, delivered
        rejected += isinstance(item, CodecError)
        delivered += not isinstance(item, CodecError)


def socket_live(cases: list[bytes], expected: int) -> tuple[int, list[str]]:
    """Write `cases` to a live SocketTransport over one connection; (messages delivered, problems)."""
    problems: list[str] = []
    with SocketTransport("rx", "127.0.0.1:0", {}, SECRET, max_message_bytes=LIMIT) as rx:
        rx.start()
        host, _, port = rx.address.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=30)
        connection = Connection(sock, sock.makefile("rb"), "rx", "push", rx.address)
        dial_handshake(connection.reader, connection.write, SharedSecret("fuzz", SECRET), "rx", "push")
        sock.settimeout(None)
        done = threading.Event()

        def write() -> None:
            for case in cases:
                sock.sendall(case)
            sock.sendall(b"".join(sw.encode_bye()))
            done.set()

        threading.Thread(target=write, daemon=True).start()
        delivered = 0
        while True:
            message = rx.receive(60.0)
            if message is None:
                problems.append("the live node went silent")
                break
            if message.control == {"type": "broken"}:
                problems.append("the connection broke")
                break
            delivered += 1
            if delivered >= expected and done.is_set():
                if rx.receive(0.5) is not None:
                    problems.append("the live node delivered more than the codec")
                break
        connection.release()
    if delivered != expected:
        problems.append(f"live node delivered {delivered} messages, the codec {expected}")
    return delivered, problems


def socket_fuzz(args: argparse.Namespace) -> bool:
    rng = random.Random(args.seed)
    socket_decode(socket_valid(random.Random(1)))   # warm up
    rejected = crashes = lost = delivered = 0
    slowest, kept = (0.0, ""), []
    started = time.perf_counter()
    for k in range(args.cases):
        label, case = socket_case(rng, k)
        case += b"".join(bytes(b) for b in sw.encode_data(Tag("act", mb=k), torch.arange(3.0))[0])
        t = time.perf_counter()
        try:
            bad, good = socket_decode(case)
        except Exception as exc:
            crashes += 1
            print(f"SOCKET CRASH case {k} ({label}): {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
            continue
        slowest = max(slowest, (time.perf_counter() - t, f"case {k} ({label})"))
        rejected += bad > 0
        lost += good == 0
        if k < args.live_cases:
            kept.append(case)
            delivered += good
    codec_s = time.perf_counter() - started
    live_delivered, problems = socket_live(kept, delivered) if kept else (0, [])
    for problem in problems:
        print("SOCKET LIVE:", problem)
    print(f"socket cases {args.cases} (targeted {len(SOCKET_TARGETED)}, seed {args.seed}) in {codec_s:.1f} s; "
          f"rejected {rejected}; crashes {crashes}; lost sentinels {lost}")
    print(f"socket slowest case {slowest[0] * 1e3:.1f} ms: {slowest[1]}")
    print(f"socket live node: {len(kept)} cases over 1 connection, {live_delivered} messages delivered, "
          f"{len(problems)} problems")
    return not (crashes or lost or problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="malformed cases to feed the codec")
    parser.add_argument("--live-cases", type=int, default=2_000, help="of those, how many to stream to a live node")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wire", choices=("grpc", "socket", "both"), default="both",
                        help="which wire to fuzz: gRPC frames, the socket transport's messages, or both")
    args = parser.parse_args()
    ok = True
    if args.wire in ("grpc", "both"):
        ok = grpc_fuzz(args)
    if args.wire in ("socket", "both"):
        ok = socket_fuzz(args) and ok
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS {rss / 1024:.0f} MiB")
    return 0 if ok else 1


def grpc_fuzz(args: argparse.Namespace) -> bool:
    rng = random.Random(args.seed)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    decode([*valid(random.Random(1), 1), *sentinel(2, 0)])   # warm up json and torch: not a case's cost
    rejected = crashes = lost = delivered = 0
    slowest, kept = (0.0, ""), []
    started = time.perf_counter()
    for k in range(args.cases):
        label, case = make_case(rng, k)
        case = [*case, *sentinel(2**63 + k, k)]
        t = time.perf_counter()
        try:
            bad, good = decode(case)
        except Exception as exc:
            crashes += 1
            print(f"CRASH case {k} ({label}): {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
            continue
        elapsed = time.perf_counter() - t
        slowest = max(slowest, (elapsed, f"case {k} ({label})"))
        rejected += bad > 0
        lost += good == 0   # the sentinel, at least, must come out
        if k < args.live_cases:
            kept.append(renumber(case, k))   # the sentinel too, as the case's last distinct number
            delivered += good
    codec_s = time.perf_counter() - started
    live_delivered, problems = live(kept, delivered) if kept else (0, [])
    for problem in problems:
        print("LIVE:", problem)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"cases {args.cases} (targeted {len(TARGETED)}, seed {args.seed}) in {codec_s:.1f} s; rejected {rejected}; "
          f"crashes {crashes}; lost sentinels {lost}")
    print(f"slowest case {slowest[0] * 1e3:.1f} ms: {slowest[1]}")
    print(f"live node: {len(kept)} cases over {(len(kept) + 499) // 500} streams, {live_delivered} messages delivered, "
          f"{len(problems)} problems")
    print(f"peak RSS {rss / 1024:.0f} MiB after the gRPC wire (at start {rss0 / 1024:.0f} MiB)")
    return not (crashes or lost or problems)


if __name__ == "__main__":
    sys.exit(main())
