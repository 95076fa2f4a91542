"""Serialization, in paired functions: tensors, state dicts and JSON control bodies to and from frames.

Nothing received is unpickled or torch.load-ed: tensor bytes become tensors with
torch.frombuffer under a whitelisted dtype, after the shape is checked against the byte count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
import torch

from splitpipe.runtime.transport.base import Payload, check_payload
from splitpipe.runtime.transport.limits import (
    DTYPES,
    MAX_CONTROL_BYTES,
    MAX_HEADER_BYTES,
    MAX_TENSORS,
    CodecError,
    TensorHeader,
    json_object,
    tensor_nbytes,
)
from splitpipe.runtime.transport.proto.splitpipe_pb2 import ControlHeader as ProtoControlHeader
from splitpipe.runtime.transport.proto.splitpipe_pb2 import DataHeader as ProtoDataHeader
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Frame as ProtoFrame
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Tag as ProtoTag
from splitpipe.runtime.transport.proto.splitpipe_pb2 import TensorHeader as ProtoTensorHeader
from splitpipe.schedules.ir import MESSAGE_KINDS, Tag

__all__ = [
    "CodecError", "Decoded", "DTYPES", "MAX_CONTROL_BYTES",
    "tag_to_proto", "tag_from_proto", "tensor_to_bytes", "tensor_from_bytes",
    "control_to_bytes", "control_from_bytes", "payload_to_frames", "control_to_frames",
    "messages_from_frames", "payload_from_frames", "FrameAssembler", "data_sizes", "data_header", "tensor_view", "tensor_over",
    "payload_from_buffers",
]

_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class Decoded(NamedTuple):
    """One reassembled message: data (tag and payload) or control (a tuple: made for every message received)."""

    tag: Tag | None
    payload: Payload | None
    control: dict | None


def tag_to_proto(tag: Tag) -> ProtoTag:
    # The wire's field is still called `lane` (its number is what counts); it carries the owner.
    return ProtoTag(kind=tag.kind, lane=tag.owner, part=tag.part, step=tag.step, mb=tag.mb)


def tag_from_proto(proto: ProtoTag) -> Tag:
    if proto.kind not in MESSAGE_KINDS:
        raise CodecError(f"unknown message kind '{proto.kind[:40]}'; kinds are {sorted(MESSAGE_KINDS)}")
    return Tag(proto.kind, proto.lane, proto.part, proto.step, proto.mb)


def _tensor_view(tensor: torch.Tensor, key: str) -> tuple[ProtoTensorHeader, memoryview]:
    """Header and a byte view of the tensor's contiguous CPU data (may alias the tensor: copy before keeping)."""
    name, view = tensor_view(tensor, key)
    return ProtoTensorHeader(key=key, dtype=name, shape=list(tensor.shape), nbytes=view.nbytes), view


def tensor_view(tensor: torch.Tensor, key: str = "") -> tuple[str, memoryview]:
    """The dtype's wire name and a byte view of the tensor's contiguous CPU data (may alias the tensor)."""
    name = _NAMES.get(tensor.dtype)
    if name is None:
        raise TypeError(f"tensor {key or '(payload)'} has dtype {tensor.dtype}, not one of {sorted(DTYPES)}")
    flat = tensor.detach() if tensor.requires_grad else tensor
    if not flat.is_cpu:
        flat = flat.cpu()
    if not flat.is_contiguous():
        flat = flat.contiguous()
    # numpy's views cost a fraction of torch's, and memoryview's cast a fraction of numpy's: this runs per message
    array = (flat.view(torch.int16) if name == "bfloat16" else flat).numpy()
    return name, (array.data.cast("B") if array.size else memoryview(b""))


def tensor_to_bytes(tensor: torch.Tensor, key: str = "") -> tuple[ProtoTensorHeader, bytes]:
    """Header (key, dtype, shape, nbytes) and a copy of the raw little-endian bytes of a tensor."""
    header, view = _tensor_view(tensor, key)
    return header, view.tobytes()


def tensor_from_bytes(header: ProtoTensorHeader, data: bytearray | np.ndarray) -> torch.Tensor:
    """Inverse of tensor_to_bytes: a tensor over `data` (no copy), after checking dtype and size."""
    need = tensor_nbytes(header)
    if len(data) != need:
        raise CodecError(f"tensor '{header.key[:60]}' needs {need} bytes, got {len(data)}")
    return tensor_over(header, data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8))


#: numpy's name of each dtype numpy has (bfloat16 travels as int16 and is viewed back).
_NUMPY = {"float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": np.int16,
          "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8,
          "bool": np.uint8}


def tensor_over(header: TensorHeader, data: np.ndarray) -> torch.Tensor:
    """A tensor over `data` (bytes of a header whose size was checked), without a copy."""
    if data.size == 0:
        return torch.empty(tuple(header.shape), dtype=DTYPES[header.dtype])
    if header.dtype == "bool":
        if bool((data > 1).any()):
            raise CodecError(f"tensor '{header.key[:60]}' of dtype bool holds bytes other than 0 and 1")
        return torch.from_numpy(data.reshape(tuple(header.shape))).view(torch.bool)
    tensor = torch.from_numpy(data.view(_NUMPY[header.dtype]).reshape(tuple(header.shape)))
    return tensor.view(torch.bfloat16) if header.dtype == "bfloat16" else tensor


def control_to_bytes(body: dict, max_bytes: int = MAX_CONTROL_BYTES) -> bytes:
    """A control body as compact UTF-8 JSON; TypeError if it is not a JSON-serialisable dict."""
    if not isinstance(body, dict):
        raise TypeError(f"control body must be a dict, got {type(body).__name__}")
    try:
        data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"control body is not JSON-serialisable: {exc}") from None
    if len(data) > max_bytes:
        raise ValueError(f"control body of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    return data


def control_from_bytes(data: bytes | bytearray | np.ndarray, max_bytes: int = MAX_CONTROL_BYTES) -> dict:
    """Inverse of control_to_bytes: CodecError unless `data` is a JSON object within the size limit."""
    if len(data) > max_bytes:
        raise CodecError(f"control body of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    return json_object(bytes(data))


def data_sizes(header: ProtoDataHeader, max_tensors: int = MAX_TENSORS) -> list[int]:
    """Bytes of each tensor a data header announces, after every check that needs no allocation."""
    if len(header.tensors) > max_tensors:
        raise CodecError(f"{len(header.tensors)} tensors exceed the limit of {max_tensors} per message")
    if header.ByteSize() > MAX_HEADER_BYTES:
        raise CodecError(f"header of {header.ByteSize()} bytes exceeds the limit of {MAX_HEADER_BYTES}")
    tag_from_proto(header.tag)
    sizes = [tensor_nbytes(t) for t in header.tensors]
    if not header.state_dict and len(sizes) != 1:
        raise CodecError(f"a tensor message must carry one tensor, got {len(sizes)}")
    keys = [t.key for t in header.tensors]
    if header.state_dict and len(set(keys)) != len(keys):
        raise CodecError("state-dict keys repeat")
    return sizes


def data_header(tag: Tag, payload: Payload) -> tuple[ProtoDataHeader, list[memoryview]]:
    """The header of a data message and byte views of its tensors (they may alias the payload)."""
    check_payload(payload)
    items = [("", payload)] if isinstance(payload, torch.Tensor) else list(payload.items())
    headers, views = zip(*(_tensor_view(t, key) for key, t in items)) if items else ((), ())
    return ProtoDataHeader(tag=tag_to_proto(tag), state_dict=isinstance(payload, dict), tensors=headers), list(views)


def payload_from_buffers(header: ProtoDataHeader, buffers: list[np.ndarray]) -> Payload:
    """The payload of a checked data header over its filled buffers (one per tensor)."""
    tensors = [tensor_over(t, b) for t, b in zip(header.tensors, buffers)]
    return dict(zip((t.key for t in header.tensors), tensors)) if header.state_dict else tensors[0]


def _chunked(message: int, first: ProtoFrame, views: list[memoryview], chunk_bytes: int) -> list[ProtoFrame]:
    """`first`, then the bytes of `views` back to back in chunks of `chunk_bytes`: each byte copied once."""
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    frames, pieces, size = [first], [], 0
    for view in views:
        while view.nbytes:
            take = min(view.nbytes, chunk_bytes - size)
            pieces.append(view[:take])
            view, size = view[take:], size + take
            if size == chunk_bytes:
                frames.append(ProtoFrame(message=message, index=len(frames), chunk=b"".join(pieces)))
                pieces, size = [], 0
    if size:
        frames.append(ProtoFrame(message=message, index=len(frames), chunk=b"".join(pieces)))
    frames[-1].last = True
    return frames


def payload_to_frames(message: int, tag: Tag, payload: Payload, chunk_bytes: int) -> list[ProtoFrame]:
    """Frames of one data message: a header, then the tensors' bytes in chunks of at most `chunk_bytes`."""
    header, views = data_header(tag, payload)
    return _chunked(message, ProtoFrame(message=message, data=header), views, chunk_bytes)


def control_to_frames(message: int, body: dict, chunk_bytes: int,
                      max_bytes: int = MAX_CONTROL_BYTES) -> list[ProtoFrame]:
    """Frames of one control message: a header with the JSON length, then the JSON in chunks."""
    data = control_to_bytes(body, max_bytes)
    first = ProtoFrame(message=message, control=ProtoControlHeader(nbytes=len(data)))
    return _chunked(message, first, [memoryview(data)], chunk_bytes)


def messages_from_frames(frames: Iterable[ProtoFrame], max_message_bytes: int,
                         max_control_bytes: int = MAX_CONTROL_BYTES, max_tensors: int = MAX_TENSORS,
                         strict: bool = False) -> Iterator[Decoded | CodecError]:
    """Inverse of payload_to_frames / control_to_frames over a whole stream.

    Yields each reassembled message, or a CodecError for each malformed one (whose remaining
    frames are skipped), and never buffers more than a header allows within the limits.
    """
    assembler = FrameAssembler(max_message_bytes, min(max_control_bytes, max_message_bytes), max_tensors, strict)
    for frame in frames:
        yield from assembler.feed(frame)
    yield from assembler.finish()


def payload_from_frames(frames: Iterable[ProtoFrame], max_message_bytes: int = 1 << 30) -> tuple[Tag, Payload]:
    """The one data message in `frames`; CodecError if it is malformed or not a data message."""
    out = list(messages_from_frames(frames, max_message_bytes))
    if len(out) != 1:
        raise CodecError(f"expected one message, got {len(out)}")
    if isinstance(out[0], CodecError):
        raise out[0]
    if out[0].tag is None or out[0].payload is None:
        raise CodecError("expected a data message, got a control message")
    return out[0].tag, out[0].payload


class FrameAssembler:
    """Reassembles the frames of one stream, message by message, checking each against the limits.

    Every malformed input becomes a CodecError. Should a check be missing, `strict=False` (a live
    node) turns any other exception into a CodecError too, so one message is lost, never the
    stream; the fuzzer runs with `strict=True` so such a gap shows as a crash.
    """

    def __init__(self, max_message_bytes: int, max_control_bytes: int, max_tensors: int = MAX_TENSORS,
                 strict: bool = False) -> None:
        self.max_message_bytes, self.max_control_bytes = max_message_bytes, max_control_bytes
        self.max_tensors, self.strict = max_tensors, strict
        self._skip: int | None = None       # number of a rejected message whose frames are ignored
        self._reset()

    def _reset(self) -> None:
        self._message: int | None = None
        self._header: ProtoDataHeader | ProtoControlHeader | None = None
        self._buffers: list[np.ndarray] = []
        self._slot, self._offset, self._received, self._expected, self._next = 0, 0, 0, 0, 0

    def _reject(self, message: int, reason: str) -> CodecError:
        self._reset()
        self._skip = message
        return CodecError(f"message {message}: {reason}; dropped")

    def feed(self, frame: ProtoFrame) -> list[Decoded | CodecError]:
        """Messages completed or rejected by this frame (usually none, at most two)."""
        if frame.message == self._skip:
            return []
        out: list[Decoded | CodecError] = []
        if frame.index == 0 and self._message is not None:   # the previous message never ended
            out.append(self._reject(self._message, f"truncated at {self._received} of {self._expected} "
                                                   f"bytes by the start of message {frame.message}"))
        try:
            done = self._start(frame) if frame.index == 0 else self._add(frame)
        except CodecError as exc:
            out.append(self._reject(frame.message, str(exc)))
            return out
        except Exception as exc:
            if self.strict:
                raise
            out.append(self._reject(frame.message, f"undecodable ({type(exc).__name__}: {str(exc)[:200]})"))
            return out
        if done is not None:
            out.append(done)
        return out

    def finish(self) -> list[CodecError]:
        """Call at the end of the stream: an unfinished message is an error."""
        if self._message is None:
            return []
        return [self._reject(self._message, f"stream ended after {self._received} of {self._expected} bytes")]

    def _start(self, frame: ProtoFrame) -> Decoded | None:
        body = frame.WhichOneof("body")
        if body == "data":
            header = frame.data
            sizes = data_sizes(header, self.max_tensors)
            limit, total = self.max_message_bytes, sum(sizes)
        elif body == "control":
            header, sizes, limit = frame.control, [frame.control.nbytes], self.max_control_bytes
            total = header.nbytes
        else:
            raise CodecError(f"frame 0 must be a data or control header, got {body or 'an empty frame'}")
        if total > limit:
            raise CodecError(f"{total} bytes exceed the limit of {limit} bytes")
        self._message, self._header, self._expected, self._next = frame.message, header, total, 1
        self._buffers = [np.empty(n, dtype=np.uint8) for n in sizes]   # filled below, not zeroed
        return self._complete() if frame.last else None

    def _add(self, frame: ProtoFrame) -> Decoded | None:
        if frame.message != self._message:
            raise CodecError(f"frame {frame.index} arrived without its header")
        if frame.index != self._next:
            raise CodecError(f"frame {self._next} missing (got frame {frame.index})")
        if frame.WhichOneof("body") != "chunk":
            raise CodecError(f"frame {frame.index} must be a chunk, got {frame.WhichOneof('body') or 'nothing'}")
        data = np.frombuffer(frame.chunk, dtype=np.uint8)
        if self._received + len(data) > self._expected:
            raise CodecError(f"more bytes than the {self._expected} its header declares")
        while data.size:   # copy across tensor boundaries into each tensor's own (aligned) buffer
            while len(self._buffers[self._slot]) == self._offset:
                self._slot, self._offset = self._slot + 1, 0
            buffer = self._buffers[self._slot]
            n = min(len(data), len(buffer) - self._offset)
            buffer[self._offset:self._offset + n] = data[:n]
            self._offset, self._received, data = self._offset + n, self._received + n, data[n:]
        self._next += 1
        return self._complete() if frame.last else None

    def _complete(self) -> Decoded:
        message, header, buffers = self._message, self._header, self._buffers
        if self._received != self._expected:
            raise CodecError(f"truncated: last frame after {self._received} of {self._expected} bytes")
        self._reset()
        if isinstance(header, ProtoControlHeader):
            return Decoded(None, None, control_from_bytes(buffers[0], self.max_control_bytes))
        assert isinstance(header, ProtoDataHeader) and message is not None
        return Decoded(tag_from_proto(header.tag), payload_from_buffers(header, buffers), None)
