"""codec: paired encode/decode, and every malformed message rejected without stopping the stream."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import splitpipe.runtime.transport as transport_pkg
from splitpipe.runtime.transport.codec import (
    CodecError,
    Decoded,
    control_from_bytes,
    control_to_bytes,
    control_to_frames,
    messages_from_frames,
    payload_from_frames,
    payload_to_frames,
    tensor_from_bytes,
    tensor_to_bytes,
)
from splitpipe.runtime.transport.proto.splitpipe_pb2 import ControlHeader as ProtoControlHeader
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Frame as ProtoFrame
from splitpipe.schedules.ir import Tag


def good(message: int = 100) -> list[ProtoFrame]:
    return payload_to_frames(message, Tag("act", mb=7), torch.arange(6, dtype=torch.float32), 8)


def decode(frames: list[ProtoFrame], limit: int = 1 << 20) -> list[Decoded | CodecError]:
    return list(messages_from_frames(frames, limit, max_control_bytes=1000))


def test_tensor_bytes_round_trip() -> None:
    x = torch.randn(3, 4).to(torch.float16)
    header, data = tensor_to_bytes(x, "w")
    assert (header.key, header.dtype, list(header.shape), header.nbytes) == ("w", "float16", [3, 4], 24)
    assert torch.equal(tensor_from_bytes(header, bytearray(data)), x)
    with pytest.raises(TypeError, match="complex64"):
        tensor_to_bytes(torch.zeros(2, dtype=torch.complex64))


def test_payload_frames_round_trip_and_chunking() -> None:
    frames = payload_to_frames(1, Tag("grad", 1, 2, 3, 4), torch.arange(10, dtype=torch.int64), 16)
    assert [f.WhichOneof("body") for f in frames] == ["data"] + ["chunk"] * 5
    assert [f.index for f in frames] == list(range(6)) and [f.last for f in frames] == [False] * 5 + [True]
    tag, payload = payload_from_frames(frames)
    assert tag == Tag("grad", 1, 2, 3, 4) and torch.equal(payload, torch.arange(10))


def test_control_round_trip_and_limits() -> None:
    assert control_from_bytes(control_to_bytes({"a": [1, "x"]})) == {"a": [1, "x"]}
    with pytest.raises(ValueError, match="exceeds the limit"):
        control_to_bytes({"a": "x" * 100}, max_bytes=50)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        control_to_bytes({"a": float("nan")})
    (out,) = decode(control_to_frames(3, {"k": 1}, 4))
    assert out == Decoded(None, None, {"k": 1})


def _data(frames: list[ProtoFrame], **tensor: object) -> list[ProtoFrame]:
    for key, value in tensor.items():
        if key == "shape":
            frames[0].data.tensors[0].ClearField("shape")
            frames[0].data.tensors[0].shape.extend(value)  # type: ignore[arg-type]
        else:
            setattr(frames[0].data.tensors[0], key, value)
    return frames


def _oversized() -> list[ProtoFrame]:
    return payload_to_frames(1, Tag("act"), torch.zeros(1 << 19), 1 << 20)   # 2 MiB > 1 MiB limit


def _control(data: bytes) -> list[ProtoFrame]:
    return [ProtoFrame(message=1, control=ProtoControlHeader(nbytes=len(data))),
            ProtoFrame(message=1, index=1, chunk=data, last=True)]


MALFORMED = {
    "bad dtype": (lambda: _data(good(1), dtype="object"), "dtype 'object'"),
    "shape vs bytes": (lambda: _data(good(1), shape=[7]), "needs 28 bytes, but the header says 24"),
    "negative dim": (lambda: _data(good(1), shape=[-2, -3]), "negative dimension"),
    "oversized": (_oversized, "exceed the limit"),
    "missing chunk": (lambda: [f for f in good(1) if f.index != 2], "frame 2 missing"),
    "truncated": (lambda: good(1)[:-1], "truncated at 16 of 24 bytes"),
    "short last frame": (lambda: [*good(1)[:2], ProtoFrame(message=1, index=2, chunk=b"x", last=True)],
                         "truncated: last frame"),
    "extra bytes": (lambda: [*good(1)[:-1], ProtoFrame(message=1, index=3, chunk=b"x" * 16, last=True)],
                    "more bytes than"),
    "unknown kind": (lambda: _tag_kind(good(1), "pickle"), "unknown message kind 'pickle'"),
    "empty frame": (lambda: [ProtoFrame(message=1, last=True)], "got an empty frame"),
    "chunk without header": (lambda: good(1)[1:], "without its header"),
    "control not json": (lambda: _control(b"{not json"), "not UTF-8 JSON"),
    "control not utf-8": (lambda: _control(b"\xff\xfe"), "not UTF-8 JSON"),
    "control not a dict": (lambda: _control(b"[1, 2]"), "must be a JSON object"),
    "control too big": (lambda: _control(b'{"a": "' + b"x" * 2000 + b'"}'), "exceed the limit of 1000"),
    "control too deep": (lambda: _control(b'{"a":' + b"[" * 100 + b"]" * 100 + b"}"), "deeper than the limit of 64"),
    "control NaN": (lambda: _control(b'{"a": NaN}'), "holds NaN"),
    "stride overflow": (lambda: _data(good(1), shape=[0, 2**62, 2**62], nbytes=0), "overflows"),
    "too many dims": (lambda: _data(good(1), shape=[1] * 17, nbytes=4), "17 dimensions"),
    "bool bytes": (lambda: _data(good(1), dtype="bool", shape=[24]), "other than 0 and 1"),
    "too many tensors": (lambda: _state_dict(4097, key_chars=1), "4097 tensors exceed the limit of 4096"),
    "header too big": (lambda: _state_dict(4000, key_chars=300), "exceeds the limit of 1048576"),
}


def _state_dict(n: int, key_chars: int) -> list[ProtoFrame]:
    """A state dict of `n` empty tensors with keys of about `key_chars` characters."""
    tensors = {f"{i:0{key_chars}d}": torch.zeros(0) for i in range(n)}
    return payload_to_frames(1, Tag("weights"), tensors, 8)


def _tag_kind(frames: list[ProtoFrame], kind: str) -> list[ProtoFrame]:
    frames[0].data.tag.kind = kind
    return frames


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_message_is_dropped_and_the_stream_goes_on(case: str) -> None:
    make, reason = MALFORMED[case]
    out = decode([*make(), *good(100)])
    errors = [o for o in out if isinstance(o, CodecError)]
    decoded = [o for o in out if isinstance(o, Decoded)]
    assert len(errors) == 1 and reason in str(errors[0]), (case, errors)
    assert len(decoded) == 1 and decoded[0].tag == Tag("act", mb=7)
    assert torch.equal(decoded[0].payload, torch.arange(6, dtype=torch.float32))


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", "deeper than the limit of 64"),   # RecursionError in json
    (b'{"a":' + b"9" * 5000 + b"}", "not UTF-8 JSON: Exceeds the limit"),          # int digit limit
])
def test_large_control_bodies_json_cannot_parse_are_codec_errors(body: bytes, reason: str) -> None:
    (error,) = list(messages_from_frames(_control(body), 1 << 20))
    assert isinstance(error, CodecError) and reason in str(error), error


def test_an_unforeseen_decoder_error_drops_one_message_unless_strict(monkeypatch) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("a gap in the checks")
    monkeypatch.setattr("splitpipe.runtime.transport.codec.tensor_over", boom)
    error, *_ = decode([*good(1), *good(2)])
    assert isinstance(error, CodecError) and "undecodable (RuntimeError: a gap in the checks)" in str(error)
    with pytest.raises(RuntimeError, match="a gap"):
        list(messages_from_frames(good(1), 1 << 20, strict=True))


def test_stream_ending_mid_message_is_reported() -> None:
    (error,) = decode(good(5)[:2])
    assert isinstance(error, CodecError) and "stream ended after 8 of 24 bytes" in str(error)


def test_nothing_received_is_unpickled() -> None:
    root = Path(transport_pkg.__file__).parent
    for path in [*root.rglob("*.py"), root.parent / "shaping.py"]:
        text = path.read_text()
        assert not re.search(r"^\s*(import|from) (pickle|dill)|torch\.load\(|pickle\.loads?\(|allow_pickle=True",
                             text, re.MULTILINE), path
