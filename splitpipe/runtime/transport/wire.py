"""Messages on a byte stream (the socket transport): a fixed prefix, a header, then the raw bytes.

    prefix (13 bytes, big-endian): kind (1 B) | header length (4 B) | body length (8 B)
    data:    header = protobuf DataHeader (tag, keys, dtypes, shapes); body = the tensors' bytes back to back
    control: no header; body = UTF-8 JSON object
    bye:     no header, no body: the sender closes this connection on purpose

The lengths in the prefix say where the next message starts whatever the header holds, so a
malformed message is read past (its bytes discarded, never held) and the connection goes on.
Tensor bytes are read straight into one buffer per tensor (`readinto`, no other copy), after
the header passed every check of codec.py; nothing is unpickled.
"""

from __future__ import annotations

import struct
from typing import Protocol

import numpy as np
from google.protobuf.message import DecodeError

from splitpipe.runtime.transport.base import Payload
from splitpipe.runtime.transport.codec import (
    Decoded,
    control_from_bytes,
    control_to_bytes,
    data_header,
    data_sizes,
    payload_from_buffers,
    tag_from_proto,
)
from splitpipe.runtime.transport.limits import MAX_CONTROL_BYTES, MAX_HEADER_BYTES, MAX_TENSORS, CodecError
from splitpipe.runtime.transport.proto.splitpipe_pb2 import DataHeader as ProtoDataHeader
from splitpipe.schedules.ir import Tag

__all__ = ["DATA", "CONTROL", "BYE", "PREFIX", "Reader", "encode_data", "encode_control", "encode_bye",
           "read_message", "Ended"]

DATA, CONTROL, BYE = 1, 2, 3
PREFIX = struct.Struct("!BIQ")
#: Messages with fewer bytes than this go out as one buffer (one send call: lower latency).
JOIN_BELOW = 64 << 10
_SKIP = 1 << 20


class Reader(Protocol):
    def readinto(self, buffer: memoryview | bytearray | np.ndarray, /) -> int | None: ...


class Ended(Exception):
    """The peer said bye (`clean`) or the stream ended (EOF between messages, `clean` False)."""

    def __init__(self, clean: bool) -> None:
        super().__init__("bye" if clean else "end of stream")
        self.clean = clean


def encode_data(tag: Tag, payload: Payload) -> tuple[list[memoryview | bytes], int]:
    """Buffers of one data message, the tensors' bytes copied once (a snapshot); and its tensor bytes."""
    header, views = data_header(tag, payload)
    head = header.SerializeToString()
    nbytes = sum(v.nbytes for v in views)
    prefix = PREFIX.pack(DATA, len(head), nbytes)
    if nbytes < JOIN_BELOW:
        return [b"".join([prefix, head, *views])], nbytes
    return [prefix + head, *(_copy(v) for v in views)], nbytes


def _copy(view: memoryview) -> memoryview:
    out = np.empty(view.nbytes, dtype=np.uint8)
    np.copyto(out, np.frombuffer(view, dtype=np.uint8))
    return memoryview(out)


def encode_control(body: dict, max_bytes: int = MAX_CONTROL_BYTES) -> list[memoryview | bytes]:
    data = control_to_bytes(body, max_bytes)
    return [PREFIX.pack(CONTROL, 0, len(data)) + data]


def encode_bye() -> list[memoryview | bytes]:
    return [PREFIX.pack(BYE, 0, 0)]


def _read_exact(reader: Reader, buffer: memoryview | np.ndarray, at_start: bool = False) -> None:
    view = memoryview(buffer).cast("B") if not isinstance(buffer, memoryview) else buffer
    got = 0
    while got < len(view):
        n = reader.readinto(view[got:])
        if not n:
            if at_start and got == 0:
                raise Ended(False)
            raise ConnectionError(f"stream ended inside a message ({got} of {len(view)} bytes)")
        got += n


def _skip(reader: Reader, nbytes: int) -> None:
    """Read past `nbytes` without holding them (a rejected message's rest)."""
    scratch = memoryview(bytearray(min(nbytes, _SKIP)))
    while nbytes:
        take = min(nbytes, len(scratch))
        _read_exact(reader, scratch[:take])
        nbytes -= take


def read_message(reader: Reader, max_message_bytes: int, max_control_bytes: int = MAX_CONTROL_BYTES,
                 max_tensors: int = MAX_TENSORS, strict: bool = False) -> Decoded | CodecError:
    """The next message, or a CodecError for a malformed one (already read past); Ended at bye or EOF.

    ConnectionError (or another OSError) when the stream breaks inside a message. With
    `strict=False` (a live node) any unexpected exception while decoding becomes a CodecError.
    """
    prefix = bytearray(PREFIX.size)
    _read_exact(reader, memoryview(prefix), at_start=True)
    kind, head_len, body_len = PREFIX.unpack(prefix)
    if kind == BYE and head_len == body_len == 0:
        raise Ended(True)
    if head_len > MAX_HEADER_BYTES:
        _skip(reader, head_len + body_len)
        return CodecError(f"header of {head_len} bytes exceeds the limit of {MAX_HEADER_BYTES}; dropped")
    head = bytearray(head_len)
    _read_exact(reader, memoryview(head))
    try:
        if kind == CONTROL and head_len == 0:
            return _control(reader, body_len, max_control_bytes)
        if kind == DATA:
            return _data(reader, bytes(head), body_len, max_message_bytes, max_tensors)
        raise CodecError(f"unknown message kind {kind} with a {head_len}-byte header")
    except _Rejected as rejected:
        _skip(reader, rejected.left)
        return CodecError(f"{rejected.reason}; dropped")
    except CodecError as exc:
        return CodecError(f"{exc}; dropped")
    except (ConnectionError, OSError, Ended):
        raise
    except Exception as exc:
        if strict:
            raise
        return CodecError(f"undecodable ({type(exc).__name__}: {str(exc)[:200]}); dropped")


class _Rejected(Exception):
    """A message refused after its header: `left` bytes of its body are still to be read past."""

    def __init__(self, reason: str, left: int) -> None:
        super().__init__(reason)
        self.reason, self.left = reason, left


def _control(reader: Reader, body_len: int, max_bytes: int) -> Decoded:
    if body_len > max_bytes:
        raise _Rejected(f"control body of {body_len} bytes exceeds the limit of {max_bytes} bytes", body_len)
    data = bytearray(body_len)
    _read_exact(reader, memoryview(data))
    return Decoded(None, None, control_from_bytes(data, max_bytes))


def _data(reader: Reader, head: bytes, body_len: int, max_message_bytes: int, max_tensors: int) -> Decoded:
    try:
        header = ProtoDataHeader.FromString(head)
        sizes = data_sizes(header, max_tensors)
    except (CodecError, DecodeError) as exc:
        raise _Rejected(str(exc) if isinstance(exc, CodecError) else f"header is not a DataHeader: {exc}",
                        body_len) from None
    total = sum(sizes)
    if total != body_len:
        raise _Rejected(f"header declares {total} tensor bytes, the prefix {body_len}", body_len)
    if total > max_message_bytes:
        raise _Rejected(f"{total} bytes exceed the limit of {max_message_bytes} bytes", body_len)
    buffers = [np.empty(n, dtype=np.uint8) for n in sizes]   # filled below, not zeroed
    for buffer in buffers:
        if buffer.size:
            _read_exact(reader, buffer)
    return Decoded(tag_from_proto(header.tag), payload_from_buffers(header, buffers), None)
