"""How large a data message of this run can be, derived from the setup, so a node drops anything larger.

The transports' fixed limits (transport/limits.py: 1 GiB, 4096 tensors) fit the largest model
splitpipe trains; a peer could make a node of a small run allocate that much per message. Every
data message a run sends is one of two shapes::

    boundary  activations / gradients / labels of one batch at one cut   batch x (widest cut + label)
    state     weights, momentum, recovery copies (aggregation, replicas,   whole model state + momentum
              checkpoints, resume and rejoin loads, FTPipeHD's hand-off)

so the bound is the larger of the two, doubled, plus a fixed headroom: a micro-batch or a
per-device split is never larger than the batch, and a part's state never larger than the
whole model's. Control bodies (JSON) keep their own fixed limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from splitpipe.models.zoo import unit_output_shapes
from splitpipe.runtime.transport.limits import MAX_CONTROL_BYTES, MAX_TENSORS
from splitpipe.setup import Setup

__all__ = ["MessageBounds", "message_bounds", "HEADROOM_BYTES", "HEADROOM_TENSORS"]

#: Bytes added to twice the largest message: small models' messages are dwarfed by framing and rounding.
HEADROOM_BYTES = 1 << 20
#: Tensors added to twice the most a message carries.
HEADROOM_TENSORS = 16


@dataclass(frozen=True)
class MessageBounds:
    """The limits a node of this run gives its transport, and what they were derived from."""

    max_message_bytes: int
    max_tensors: int
    boundary_bytes: int   # largest batch at the widest cut, labels included
    state_bytes: int      # the whole model's state plus its momentum
    state_tensors: int    # entries of the whole model's state dict

    def transport_limits(self) -> dict[str, int]:
        """Keyword arguments for SocketTransport and GrpcTransport; control bodies keep the fixed limit
        (a `done` carries every span of the epoch, which grows with the data set, not the model)."""
        return {"max_message_bytes": self.max_message_bytes, "max_tensors": self.max_tensors,
                "max_control_bytes": MAX_CONTROL_BYTES}


def message_bounds(setup: Setup, ceiling_bytes: int = 1 << 30, ceiling_tensors: int = MAX_TENSORS) -> MessageBounds:
    """The bounds for `setup`, never above the fixed ceilings."""
    model, dataset = setup.model, setup.dataset
    first = next(model.parameters(), None)
    itemsize = first.element_size() if first is not None else 4
    per_sample = [dataset.in_channels * dataset.image_size ** 2]
    per_sample += [math.prod(shape) for shape in unit_output_shapes(model, dataset.in_channels, dataset.image_size)]
    label = 8   # int64 class index
    boundary = setup.config.batch_size * (max(per_sample) * itemsize + label)
    state = model.state_dict()
    weights = sum(t.numel() * t.element_size() for t in state.values())
    momentum = sum(p.numel() * p.element_size() for p in model.parameters())
    largest = max(boundary, weights + momentum)
    return MessageBounds(
        max_message_bytes=min(ceiling_bytes, 2 * largest + HEADROOM_BYTES),
        max_tensors=min(ceiling_tensors, 2 * len(state) + HEADROOM_TENSORS),
        boundary_bytes=boundary, state_bytes=weights + momentum, state_tensors=len(state),
    )
