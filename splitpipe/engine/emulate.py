"""The tensor executor: runs actions with real PyTorch tensors in one process.

It keeps every node's part replicas and optimizers, a per-node store of tagged tensors
(activations, gradients, labels, weights) and the autograd state between a micro-batch's
forward and backward. The event engine decides when each action runs; this decides what
it does and how long it took.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from splitpipe.data import Dataset, batches
from splitpipe.engine.timing import Timing
from splitpipe.models import split_model
from splitpipe.plan import Plan
from splitpipe.schedules.ir import (
    AGGREGATE,
    BACKWARD,
    FORWARD,
    LOAD,
    SNAPSHOT,
    STEP,
    TRANSIENT_KINDS,
    Action,
    Replica,
    Schedule,
    Tag,
)

__all__ = ["TensorExecutor", "average_states", "payload_bytes"]

State = dict[str, torch.Tensor]


def average_states(states: Sequence[State], weights: Sequence[float]) -> State:
    """Weighted average of state dicts; integer buffers (BN's batch counter) are rounded."""
    out: State = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = sum(w * s[key] for s, w in zip(states, weights))  # type: ignore[assignment]
        else:
            mean = sum(w * s[key].double() for s, w in zip(states, weights))
            out[key] = torch.round(mean).to(first.dtype)  # type: ignore[union-attr]
    return out


def payload_bytes(payload: object) -> int:
    if isinstance(payload, torch.Tensor):
        return payload.numel() * payload.element_size()
    if isinstance(payload, Mapping):
        return sum(payload_bytes(v) for v in payload.values())
    raise TypeError(f"cannot size payload of type {type(payload).__name__}")


class TensorExecutor:
    """Executes compute actions for real; timing says how long they take on the virtual clock."""

    def __init__(
        self,
        model: nn.Sequential,
        plan: Plan,
        dataset: Dataset,
        shards: Sequence[np.ndarray],
        timing: Timing,
        *,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        seed: int = 0,
        node_devices: Mapping[str, torch.device] | None = None,
    ) -> None:
        self.plan = plan
        self.template = split_model(model, plan.cuts)
        self.last_part = len(self.template) - 1
        self.dataset = dataset
        self.shards = shards
        self.timing = timing
        self.optimizer = lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.seed = seed
        self.node_devices = dict(node_devices or {})
        self.replicas: dict[Replica, tuple[nn.Module, torch.optim.Optimizer]] = {}
        self.store: dict[str, dict[Tag, object]] = defaultdict(dict)
        self.saved: dict[tuple[str, int, int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.handlers: dict[str, Callable[[str, Action], None]] = {
            FORWARD: self._forward, BACKWARD: self._backward, STEP: self._step,
            SNAPSHOT: self._snapshot, AGGREGATE: self._aggregate, LOAD: self._load,
        }
        self.loss_sum = 0.0
        self.loss_count = 0
        self.data_lanes: Mapping[tuple[str, int], int] = {}
        self.epoch_batches: dict[int, list[np.ndarray]] = {}
        self.cursor: dict[tuple[int, int], int] = {}

    # -- epoch life cycle ------------------------------------------------------------
    def begin_epoch(self, epoch: int, schedule: Schedule) -> None:
        for replica in schedule.replicas:
            if replica not in self.replicas:
                module = copy.deepcopy(self.template[replica.part]).to(self.device(replica.node))
                self.replicas[replica] = (module, self.optimizer(module.parameters()))
        self.data_lanes = schedule.data_lanes
        self.epoch_batches = {
            shard: batches(self.shards[shard], self.plan.batch_size, epoch, self.seed)
            for shard in set(schedule.data_lanes.values())
        }
        self.cursor.clear()
        self.loss_sum, self.loss_count = 0.0, 0

    def end_epoch(self) -> float:
        """Drop what is left in the stores; return the epoch's mean training loss."""
        if self.saved:
            raise RuntimeError(f"{len(self.saved)} forwards never had their backward, e.g. {next(iter(self.saved))}")
        self.store.clear()
        return self.loss_sum / max(1, self.loss_count)

    def device(self, node: str) -> torch.device:
        return self.node_devices.get(node, torch.device("cpu"))

    # -- Executor protocol -------------------------------------------------------------
    def compute(self, node: str, action: Action) -> float:
        cuda = self.device(node).type == "cuda"
        start = time.perf_counter()
        self.handlers[action.op](node, action)
        if cuda:
            torch.cuda.synchronize()
        return self.timing.duration(node, action, time.perf_counter() - start)

    def send(self, node: str, action: Action) -> tuple[object, int]:
        tag = action.tag
        assert tag is not None
        store = self.store[node]
        payload = store.pop(tag) if tag.kind in TRANSIENT_KINDS else store[tag]
        return payload, payload_bytes(payload)

    def receive(self, node: str, action: Action, payload: object) -> None:
        assert action.tag is not None
        self.store[node][action.tag] = _to_device(payload, self.device(node))

    # -- handlers --------------------------------------------------------------------
    def module(self, replica: Replica) -> nn.Module:
        return self.replicas[replica][0]

    def _forward(self, node: str, a: Action) -> None:
        module = self.module(Replica(node, a.part, a.replica))
        module.train()
        store = self.store[node]
        if a.part == 0:
            x, y = self._micro_batch(node, a)
            store[Tag("label", a.lane, 0, a.step, a.mb)] = y
            inp = x
        else:
            inp = store.pop(Tag("act", a.lane, a.part - 1, a.step, a.mb)).detach().requires_grad_()  # type: ignore[union-attr]
        out = module(inp)
        key = (node, a.part, a.lane, a.step, a.mb)
        if a.part == self.last_part:
            y = store.pop(Tag("label", a.lane, 0, a.step, a.mb))
            ce = F.cross_entropy(out, y, reduction="sum")  # type: ignore[arg-type]
            self.loss_sum += ce.item()
            self.loss_count += len(y)  # type: ignore[arg-type]
            self.saved[key] = (inp, ce / self._batch_len(a))
        else:
            store[Tag("act", a.lane, a.part, a.step, a.mb)] = out.detach()
            self.saved[key] = (inp, out)

    def _backward(self, node: str, a: Action) -> None:
        inp, out = self.saved.pop((node, a.part, a.lane, a.step, a.mb))
        store = self.store[node]
        if a.part == self.last_part:
            out.backward()
        else:
            out.backward(store.pop(Tag("grad", a.lane, a.part + 1, a.step, a.mb)))  # type: ignore[arg-type]
        if a.part > 0:
            store[Tag("grad", a.lane, a.part, a.step, a.mb)] = inp.grad

    def _step(self, node: str, a: Action) -> None:
        _, optimizer = self.replicas[Replica(node, a.part, a.replica)]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def _snapshot(self, node: str, a: Action) -> None:
        state = self.module(Replica(node, a.part, a.replica)).state_dict()
        self.store[node][a.tag] = {k: v.detach().clone() for k, v in state.items()}  # type: ignore[index]

    def _aggregate(self, node: str, a: Action) -> None:
        store = self.store[node]
        states = [store.pop(t) for t in a.sources]
        self.store[node][a.tag] = average_states(states, a.weights)  # type: ignore[arg-type,index]

    def _load(self, node: str, a: Action) -> None:
        assert a.tag is not None
        store = self.store[node]
        state = store[a.tag] if a.tag.kind == "avg" else store.pop(a.tag)
        self.module(Replica(node, a.part, a.replica)).load_state_dict(state)  # type: ignore[arg-type]

    # -- data --------------------------------------------------------------------------
    def _micro_batch(self, node: str, a: Action) -> tuple[torch.Tensor, torch.Tensor]:
        shard = self.data_lanes[(node, a.lane)]
        batch = self.epoch_batches[shard][a.step]
        start = self.cursor.get((a.lane, a.step), 0)
        index = torch.as_tensor(batch[start:start + a.samples])
        self.cursor[(a.lane, a.step)] = start + a.samples
        dev = self.device(node)
        return self.dataset.x_train[index].to(dev), self.dataset.y_train[index].to(dev)

    def _batch_len(self, a: Action) -> int:
        samples = self.plan.shard_sizes[a.lane]
        return min(self.plan.batch_size, samples - a.step * self.plan.batch_size)

    # -- evaluation --------------------------------------------------------------------
    def global_model(self, schedule: Schedule) -> nn.Sequential:
        """The model FedAvg would give now: each part averaged over schedule.evaluate's replicas."""
        units: list[nn.Module] = []
        for part, entries in sorted(schedule.evaluate.items()):
            states = [_to_device(self.module(r).state_dict(), torch.device("cpu")) for r, _ in entries]
            module = copy.deepcopy(self.template[part])
            module.load_state_dict(average_states(states, [w for _, w in entries]))  # type: ignore[arg-type]
            units.extend(module)
        return nn.Sequential(*units)

    def evaluate(self, schedule: Schedule, batch_size: int = 512) -> float:
        model = self.global_model(schedule).eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(self.dataset.y_test), batch_size):
                x = self.dataset.x_test[start:start + batch_size]
                y = self.dataset.y_test[start:start + batch_size]
                correct += int((model(x).argmax(1) == y).sum())
        return correct / max(1, len(self.dataset.y_test))


def _to_device(payload: object, device: torch.device) -> object:
    if isinstance(payload, torch.Tensor):
        return payload.to(device)
    if isinstance(payload, Mapping):
        return {k: _to_device(v, device) for k, v in payload.items()}
    return payload
