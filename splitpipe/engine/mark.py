"""A copy of an executor's training state, so that a segment cut short by a failure can be redone."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from splitpipe.engine.emulate import TensorExecutor
from splitpipe.plan import Plan
from splitpipe.schedules.ir import Replica

__all__ = ["Mark"]


@dataclass
class Mark:
    """Weights, optimizer state, data position and loss of the executor's replicas at one instant."""

    replicas: dict[Replica, tuple[dict[str, torch.Tensor], dict[str, object]]]
    cursor: dict[tuple[int, int], int]
    loss: tuple[float, int]
    plan: Plan

    @classmethod
    def take(cls, x: TensorExecutor) -> Mark:
        return cls(
            {r: (copy.deepcopy(m.state_dict()), copy.deepcopy(o.state_dict())) for r, (m, o) in x.replicas.items()},
            dict(x.cursor), (x.loss_sum, x.loss_count), x.plan,
        )

    def restore(self, x: TensorExecutor) -> None:
        """Back to the mark; what ran since is lost: stored tensors and forwards awaiting their backward."""
        if self.plan is not x.plan:
            raise RuntimeError("rewind without a mark of the current plan")
        for replica, (module, optimizer) in x.replicas.items():
            if replica in self.replicas:
                weights, state = self.replicas[replica]
                module.load_state_dict(weights)
                optimizer.load_state_dict(state)
            else:  # made since the mark (an epoch's first segment makes them): back to the template
                module.load_state_dict(x.template[replica.part].state_dict())
                optimizer.state.clear()
        x.cursor = dict(self.cursor)
        x.loss_sum, x.loss_count = self.loss
        x.store.clear()
        x.saved.clear()
        x.stashed.clear()
        x.memory.forwards.clear()
