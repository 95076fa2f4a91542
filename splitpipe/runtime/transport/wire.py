"""Messages on a byte stream (the socket transport): a fixed prefix, a header, then the raw bytes.

    prefix (13 bytes, big-endian): kind (1 B) | header length (4 B) | body length (8 B)
    data:    header = the tag, then each tensor's key, dtype and shape (below); body = the tensors' bytes
    control: no header; body = UTF-8 JSON object
    bye:     no header, no body: the sender closes this connection on purpose

    data header: kind length (1 B) kind | owner part step mb (4 x int64) | state dict (1 B) | tensors (4 B)
                 then per tensor: key length (2 B) key | dtype (1 B, index in DTYPE_CODES) | dims (1 B) | dims x int64

The lengths in the prefix say where the next message starts whatever the header holds, so a
malformed message is read past (its bytes discarded, never held) and the connection goes on.
The header is plain struct fields, not protobuf: decoding one costs microseconds, which is what
small activations wait for. Every field is checked (limits.py) before a buffer is allocated;
tensor bytes are then read straight into one buffer per tensor (`readinto`, no other copy;
sockio.py); nothing is unpickled.
"""

from __future__ import annotations

import functools
import math
import struct
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import numpy as np
import torch

from splitpipe.runtime.transport.base import Payload, check_payload
from splitpipe.runtime.transport.codec import (
    Decoded,
    control_from_bytes,
    control_to_bytes,
    tensor_over,
    tensor_view,
)
from splitpipe.runtime.transport.limits import (
    DTYPES,
    ITEMSIZE,
    MAX_CONTROL_BYTES,
    MAX_DIMS,
    MAX_HEADER_BYTES,
    MAX_TENSORS,
    CodecError,
    tensor_nbytes,
)
from splitpipe.runtime.transport.sockio import SocketReader, rest
from splitpipe.schedules.ir import MESSAGE_KINDS, Tag

__all__ = ["DATA", "CONTROL", "BYE", "PREFIX", "Reader", "TensorSpec", "encode_data", "encode_control",
           "encode_bye", "encode_header", "Pool", "parse_header", "read_message", "Ended"]

DATA, CONTROL, BYE = 1, 2, 3
PREFIX = struct.Struct("!BIQ")
_TAG = struct.Struct("!qqqqBI")         # owner, part, step, mb, state dict, tensors
_KEY, _DIMS = struct.Struct("!H"), struct.Struct("!BB")
#: dtype codes on the wire: the index in this tuple.
DTYPE_CODES = tuple(DTYPES)
_CODE = {name: i for i, name in enumerate(DTYPE_CODES)}
#: Messages with fewer bytes than this go out as one buffer (one send call: lower latency).
JOIN_BELOW = 64 << 10
_SKIP = 1 << 20


class Reader(Protocol):
    """A buffered binary stream over a socket (socket.makefile("rb"))."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...

    def close(self) -> None: ...


class Ended(Exception):
    """The peer said bye (`clean`) or the stream ended (EOF between messages, `clean` False)."""

    def __init__(self, clean: bool) -> None:
        super().__init__("bye" if clean else "end of stream")
        self.clean = clean


class TensorSpec(NamedTuple):
    """One tensor of a data header (limits.TensorHeader)."""

    key: str
    dtype: str
    shape: Sequence[int]
    nbytes: int


def encode_header(tag: Tag, state_dict: bool, specs: Sequence[TensorSpec]) -> bytes:
    kind = tag.kind.encode()
    parts = [bytes([len(kind)]), kind, _TAG.pack(tag.owner, tag.part, tag.step, tag.mb, state_dict, len(specs))]
    for spec in specs:
        key = spec.key.encode()
        parts += [_KEY.pack(len(key)), key, _DIMS.pack(_CODE[spec.dtype], len(spec.shape)),
                  struct.pack(f"!{len(spec.shape)}q", *spec.shape)]
    return b"".join(parts)


def parse_header(head: bytes | bytearray, max_tensors: int = MAX_TENSORS) -> tuple[Tag, bool, list[TensorSpec]]:
    """Inverse of encode_header; CodecError for anything malformed, before any allocation."""
    single = _parse_single(head) if max_tensors >= 1 else None
    if single is not None:
        return single
    try:
        size = head[0]
        kind = head[1:1 + size].decode()
        if kind not in MESSAGE_KINDS:
            raise CodecError(f"unknown message kind '{kind[:40]}'; kinds are {sorted(MESSAGE_KINDS)}")
        owner, part, step, mb, state_dict, count = _TAG.unpack_from(head, 1 + size)
        if state_dict > 1:
            raise CodecError(f"state-dict flag {state_dict} is neither 0 nor 1")
        if count > max_tensors:
            raise CodecError(f"{count} tensors exceed the limit of {max_tensors} per message")
        if not state_dict and count != 1:
            raise CodecError(f"a tensor message must carry one tensor, got {count}")
        at, specs = 1 + size + _TAG.size, []
        for _ in range(count):
            (length,) = _KEY.unpack_from(head, at)
            key = head[at + 2:at + 2 + length].decode()
            code, dims = _DIMS.unpack_from(head, at + 2 + length)
            at += 2 + length + _DIMS.size
            if dims > MAX_DIMS:
                raise CodecError(f"tensor '{key[:60]}' has {dims} dimensions, more than the limit of {MAX_DIMS}")
            if code >= len(DTYPE_CODES):
                raise CodecError(f"tensor '{key[:60]}' has dtype code {code}, not one of 0-{len(DTYPE_CODES) - 1}")
            shape = struct.unpack_from(f"!{dims}q", head, at)
            at += 8 * dims
            name = DTYPE_CODES[code]
            # the shape alone says the size; tensor_nbytes then checks signs and overflow
            spec = TensorSpec(key, name, shape, math.prod(shape) * ITEMSIZE[name])
            specs.append(spec._replace(nbytes=tensor_nbytes(spec)))
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise CodecError(f"header is truncated or malformed ({exc})") from None
    if at != len(head):
        raise CodecError(f"header has {len(head) - at} bytes after its last tensor")
    if state_dict and len({s.key for s in specs}) != len(specs):
        raise CodecError("state-dict keys repeat")
    return Tag(kind, owner, part, step, mb), bool(state_dict), specs


def _parse_single(head: bytes | bytearray | memoryview) -> tuple[Tag, bool, list[TensorSpec]] | None:
    """A well-formed one-tensor header (what encode_data's fast path writes) in one unpack; None for
    anything else, which parse_header's general path then reads (and names what is wrong with it)."""
    size = head[0] if head else 0
    dims, odd = divmod(len(head) - size - _SINGLE_FIXED, 8)
    if odd or not 0 <= dims <= MAX_DIMS:
        return None
    unpack = _HEADS.get((size, dims)) or _single(size, dims, False).unpack
    _, kind, owner, part, step, mb, state_dict, count, key_len, code, declared, *shape = unpack(head)
    name = _KIND_NAMES.get(kind)
    if name is None or state_dict or count != 1 or key_len or declared != dims or code >= len(DTYPE_CODES) \
            or (shape and min(shape) < 0):
        return None
    dtype = DTYPE_CODES[code]
    nbytes = math.prod(shape) * ITEMSIZE[dtype]
    if (nbytes or math.prod([d or 1 for d in shape]) * ITEMSIZE[dtype]) >= _MAX_STRIDES:
        return None
    return Tag(name, owner, part, step, mb), False, [TensorSpec("", dtype, shape, nbytes)]


def encode_data(tag: Tag, payload: Payload) -> tuple[list[memoryview | bytes], int]:
    """Buffers of one data message and its tensor bytes.

    A small message is one joined buffer (a copy: one system call, and a snapshot already).
    A large one's tensor buffers are views of the payload, not copies: the sender writes what
    the socket takes at once straight from them and snapshots only the rest (Pool.snapshot)
    before `send` returns, so that a later change to the payload does not reach the wire.
    A single tensor (an activation or a gradient) has its prefix and header packed by one
    cached struct: a few microseconds, where the general path takes tens.
    """
    if isinstance(payload, torch.Tensor):
        name, view = tensor_view(payload)
        shape, kind, nbytes = payload.shape, tag.kind.encode(), view.nbytes
        packer = _single(len(kind), len(shape))
        head = packer.pack(DATA, packer.size - PREFIX.size, nbytes, len(kind), kind, tag.owner,
                           tag.part, tag.step, tag.mb, 0, 1, 0, _CODE[name], len(shape), *shape)
        if nbytes < JOIN_BELOW:
            return [head + view if nbytes else head], nbytes
        return [head, view], nbytes
    check_payload(payload)
    specs, views = [], []
    for key, tensor in payload.items():
        name, view = tensor_view(tensor, key)
        specs.append(TensorSpec(key, name, tuple(tensor.shape), view.nbytes))
        views.append(view)
    head = encode_header(tag, True, specs)
    nbytes = sum(v.nbytes for v in views)
    prefix = PREFIX.pack(DATA, len(head), nbytes)
    if nbytes < JOIN_BELOW:
        return [b"".join([prefix, head, *views])], nbytes
    return [prefix + head, *(v for v in views if v.nbytes)], nbytes


@functools.lru_cache(maxsize=512)
def _single(kind_len: int, dims: int, prefix: bool = True) -> struct.Struct:
    """(Prefix and) header of a one-tensor message with no key as one struct: the bytes encode_header writes."""
    head = struct.Struct(f"!{'BIQ' if prefix else ''}B{kind_len}sqqqqBIHBB{dims}q")
    if not prefix and len(_HEADS) < 512:
        _HEADS[(kind_len, dims)] = head.unpack
    return head


#: The unpack of each one-tensor header seen so far (a dict lookup is quicker than the cache's call).
_HEADS: dict[tuple[int, int], Callable[[bytes | bytearray | memoryview], tuple]] = {}
#: Message kinds as the wire spells them.
_KIND_NAMES = {kind.encode(): kind for kind in MESSAGE_KINDS}


#: Bytes of a one-tensor header besides its kind and dimensions.
_SINGLE_FIXED = 1 + _TAG.size + _KEY.size + _DIMS.size
#: Shapes whose strides need this many bytes are refused (limits.tensor_nbytes says why).
_MAX_STRIDES = 1 << 62


class Pool:
    """Snapshot buffers to reuse, held by size class, at most `max_bytes` idle (fresh pages are slow to fault in).

    Sizes are rounded up to a power of two, so that the rests of partly written messages (any
    size) find a buffer too. Only buffers the pool lent are taken back: never a payload's memory.
    """

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self._max_bytes, self._idle_bytes = max_bytes, 0
        self._idle: dict[int, list[np.ndarray]] = {}
        self._lent: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def copy(self, view: memoryview) -> memoryview:
        size = 1 << max(view.nbytes - 1, 0).bit_length()
        with self._lock:
            free = self._idle.get(size)
            out = free.pop() if free else None
            if out is not None:
                self._idle_bytes -= out.nbytes
        if out is None:
            out = np.empty(size, dtype=np.uint8)
        np.copyto(out[:view.nbytes], np.frombuffer(view, dtype=np.uint8))
        with self._lock:
            self._lent[id(out)] = out
        return out.data[:view.nbytes]   # its .obj is `out`, for recycle

    def snapshot(self, buffers: Sequence[memoryview | bytes], skip: int = 0) -> list[memoryview | bytes]:
        """`buffers` after their first `skip` bytes, as buffers no later change to a payload reaches."""
        return [view if isinstance(view.obj, bytes) or id(view.obj) in self._lent else self.copy(view)
                for view in rest(buffers, skip)]

    def recycle(self, buffers: Sequence[memoryview | bytes]) -> None:
        """Take back the pool's buffers among `buffers` (written: nothing reads them any more)."""
        for buffer in buffers:
            if not isinstance(buffer, memoryview):
                continue
            with self._lock:
                array = self._lent.pop(id(buffer.obj), None)
                if array is not None and self._idle_bytes + array.nbytes <= self._max_bytes:
                    self._idle.setdefault(array.nbytes, []).append(array)
                    self._idle_bytes += array.nbytes


def encode_control(body: dict, max_bytes: int = MAX_CONTROL_BYTES) -> list[memoryview | bytes]:
    data = control_to_bytes(body, max_bytes)
    return [PREFIX.pack(CONTROL, 0, len(data)) + data]


def encode_bye() -> list[memoryview | bytes]:
    return [PREFIX.pack(BYE, 0, 0)]


def _read_exact(reader: Reader, buffer: memoryview | np.ndarray, at_start: bool = False) -> None:
    view = buffer.data if isinstance(buffer, np.ndarray) else buffer
    got = reader.readinto(view) or 0   # almost always all of it at once
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
    whole = (_whole_single(reader, max_message_bytes)   # one tensor: what parse_header's fast path takes too
             if max_tensors >= 1 and isinstance(reader, SocketReader) else None)
    if whole is not None:
        return whole
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
            return _data(reader, head, body_len, max_message_bytes, max_tensors)
        raise _Rejected(f"unknown message kind {kind} with a {head_len}-byte header", body_len)
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


def _whole_single(reader: SocketReader, max_message_bytes: int) -> Decoded | CodecError | None:
    """The next message if it is a one-tensor data message that fits `reader`'s buffer (a small or mid-size
    activation or gradient, the usual case), decoded from there: one unpack, one copy. The bytes of it that
    are not buffered yet are read into the buffer first: the general path would read just as many.
    None for anything else, which read_message's general path reads (and names what is wrong with it)."""
    view = reader.peek()
    if len(view) < PREFIX.size:   # (a reader thread woken by bytes): the general path would read them too
        reader.fill()
        view = reader.peek()
        if len(view) < PREFIX.size:
            return None
    kind, head_len, body_len = PREFIX.unpack_from(view)
    start = PREFIX.size + head_len
    end = start + body_len
    if kind != DATA or end > reader.capacity or body_len > max_message_bytes:
        return None
    if end > len(view):
        reader.fill_to(end)
        view = reader.peek()
    single = _parse_single(view[PREFIX.size:start])
    if single is None or single[2][0].nbytes != body_len:
        return None
    data = np.frombuffer(view[start:end], dtype=np.uint8).copy()   # the tensor's own memory
    reader.consume(end)
    try:
        return Decoded(single[0], tensor_over(single[2][0], data), None)
    except CodecError as exc:   # a bool tensor holding other bytes
        return CodecError(f"{exc}; dropped")


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


def _data(reader: Reader, head: bytearray, body_len: int, max_message_bytes: int, max_tensors: int) -> Decoded:
    try:
        tag, state_dict, specs = parse_header(head, max_tensors)
    except CodecError as exc:
        raise _Rejected(str(exc), body_len) from None
    sizes = [spec.nbytes for spec in specs]
    total = sum(sizes)
    if total != body_len:
        raise _Rejected(f"header declares {total} tensor bytes, the prefix {body_len}", body_len)
    if total > max_message_bytes:
        raise _Rejected(f"{total} bytes exceed the limit of {max_message_bytes} bytes", body_len)
    buffers = [np.empty(n, dtype=np.uint8) for n in sizes]   # filled below, not zeroed
    for buffer in buffers:
        if buffer.size:
            _read_exact(reader, buffer)
    tensors = [tensor_over(spec, buffer) for spec, buffer in zip(specs, buffers)]
    payload: Payload = dict(zip((s.key for s in specs), tensors)) if state_dict else tensors[0]
    return Decoded(tag, payload, None)
