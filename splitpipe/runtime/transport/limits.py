"""What a peer can make a node hold: tensor headers and JSON bodies checked before any allocation."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Protocol

import torch

__all__ = [
    "CodecError", "DTYPES", "ITEMSIZE", "MAX_CONTROL_BYTES", "MAX_TENSORS", "MAX_HEADER_BYTES", "MAX_DIMS",
    "MAX_JSON_DEPTH", "tensor_nbytes", "json_object", "TensorHeader",
]

#: The only dtypes accepted off the wire, by their name in the header.
DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, name) for name in (
        "float64", "float32", "float16", "bfloat16",
        "int64", "int32", "int16", "int8", "uint8", "bool",
    )
}
#: Bytes per element of each accepted dtype.
ITEMSIZE: dict[str, int] = {name: torch.empty((), dtype=dtype).element_size() for name, dtype in DTYPES.items()}
#: Largest control body (JSON) accepted, before max_message_bytes.
MAX_CONTROL_BYTES = 64 << 20
#: Most tensors in one message: a state dict of the largest model splitpipe trains has a few hundred.
MAX_TENSORS = 4096
#: Largest data header (tag, keys, dtypes, shapes): 4096 tensors with 200-character keys fit.
MAX_HEADER_BYTES = 1 << 20
#: Most dimensions of a received tensor.
MAX_DIMS = 16
#: Deepest nesting of arrays and objects in a control body.
MAX_JSON_DEPTH = 64
#: torch keeps sizes and strides as int64; a shape whose strides would overflow is refused.
_MAX_ELEMENTS = 1 << 62


class TensorHeader(Protocol):
    """What a tensor's header says: protobuf's TensorHeader (gRPC) or wire.TensorSpec (sockets)."""

    @property
    def key(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> Sequence[int]: ...
    @property
    def nbytes(self) -> int: ...


class CodecError(ValueError):
    """A received message is malformed; it is dropped, the stream goes on."""


def tensor_nbytes(header: TensorHeader) -> int:
    """Bytes the header's dtype and shape need, checked for overflow; CodecError if inconsistent.

    The product of the dimensions (zeros counted as ones, as torch does for strides) must fit
    int64, so a shape such as [0, 2**62, 2**62] is refused here rather than inside torch.
    """
    what = f"tensor '{header.key[:60]}'" if header.key else "tensor"
    itemsize = ITEMSIZE.get(header.dtype)
    if itemsize is None:
        raise CodecError(f"{what} has dtype '{header.dtype[:40]}', not one of {sorted(DTYPES)}")
    if len(header.shape) > MAX_DIMS:
        raise CodecError(f"{what} has {len(header.shape)} dimensions, more than the limit of {MAX_DIMS}")
    shape = list(header.shape)   # one copy out of the protobuf: reading its fields one by one is slow
    if shape and min(shape) < 0:
        raise CodecError(f"{what} has a negative dimension in shape {shape}")
    strides = math.prod([d or 1 for d in shape]) * itemsize
    if strides >= _MAX_ELEMENTS:
        raise CodecError(f"{what} of shape {shape} overflows: its strides need {strides} bytes, "
                         f"the limit is {_MAX_ELEMENTS}")
    need = math.prod(shape) * itemsize
    if need != header.nbytes:
        raise CodecError(f"{what} of shape {shape} and dtype {header.dtype} needs "
                         f"{need} bytes, but the header says {header.nbytes}")
    return need


def _no_constant(name: str) -> None:
    raise CodecError(f"control body holds {name}, which is not JSON")


def _depth(body: object, limit: int) -> int:
    """Deepest nesting of lists and dicts in `body`, walked without recursion; stops past `limit`."""
    deepest, todo = 0, [(body, 1)]
    while todo:
        node, depth = todo.pop()
        if not isinstance(node, (list, dict)):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        todo.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def json_object(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict:
    """`data` as a JSON object nested at most `max_depth` deep; CodecError otherwise, never another exception.

    json's C parser recurses, so very deep input ends in RecursionError, caught here; integers
    longer than Python's digit limit end in ValueError, caught here; NaN and Infinity are refused.
    """
    try:
        body = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except CodecError:
        raise
    except RecursionError:
        raise CodecError(f"control body nests deeper than the limit of {max_depth}") from None
    except (UnicodeDecodeError, ValueError) as exc:   # JSONDecodeError and over-long integers
        raise CodecError(f"control body is not UTF-8 JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise CodecError(f"control body must be a JSON object, got {type(body).__name__}")
    depth = _depth(body, max_depth)
    if depth > max_depth:
        raise CodecError(f"control body nests deeper than the limit of {max_depth}")
    return body
