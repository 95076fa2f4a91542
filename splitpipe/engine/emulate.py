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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from splitpipe.data import Dataset, batches
from splitpipe.data.augment import augment, draws
from splitpipe.engine.memory import MemoryMeter
from splitpipe.engine.timing import Timing
from splitpipe.models import split_model
from splitpipe.plan import Plan
from splitpipe.schedules.ir import (
    AGGREGATE,
    BACKWARD,
    FORWARD,
    LOAD,
    SNAPSHOT,
    STASH_WEIGHTS,
    STEP,
    TRANSIENT_KINDS,
    Action,
    Replica,
    Schedule,
    Tag,
)

__all__ = ["TensorExecutor", "average_states", "payload_bytes"]

State = dict[str, torch.Tensor]


def average_states(
    states: Sequence[State], weights: Sequence[float], keys: Iterable[str] | None = None
) -> State:
    """Weighted average of state dicts; integer buffers (BN's batch counter) are rounded.

    Each key is averaged over the states that hold it; where some states lack it, the
    weights of those that hold it are renormalised to sum to 1 (owners with different cuts
    hold a unit in different parts). `keys` picks the output (default: every key seen).
    """
    out: State = {}
    for key in dict.fromkeys(k for s in states for k in s) if keys is None else keys:
        held = [(s[key], w) for s, w in zip(states, weights) if key in s]
        if len(held) < len(states):
            total = sum(w for _, w in held)
            held = [(t, w / total) for t, w in held]
        first = held[0][0]
        if first.is_floating_point():
            out[key] = cast(torch.Tensor, sum(w * t for t, w in held))
        else:
            mean = cast(torch.Tensor, sum(w * t.double() for t, w in held))
            out[key] = torch.round(mean).to(first.dtype)
    return out


def payload_bytes(payload: object) -> int:
    if isinstance(payload, torch.Tensor):
        return payload.numel() * payload.element_size()
    if isinstance(payload, Mapping):
        return sum(payload_bytes(v) for v in payload.values())
    raise TypeError(f"cannot size payload of type {type(payload).__name__}")


def _sgd(params: Iterable[nn.Parameter], lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD over `params`; a part without parameters (a lone max-pool) gets one over an empty tensor,
    since torch refuses an empty list and the part still takes its Step."""
    listed = list(params)
    return torch.optim.SGD(listed or [nn.Parameter(torch.empty(0))], lr=lr, momentum=momentum,
                           weight_decay=weight_decay)


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
        node: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.node = node
        self.clock = clock  # what "measured" reads: the host's wall clock, or a thread's CPU time (benchmarks)  # a runtime node keeps only its own replicas and data; None keeps all
        self.model = model
        self.use_plan(plan)
        self.dataset = dataset
        self.shards = shards
        self.timing = timing
        self.optimizer = lambda params: _sgd(params, lr, momentum, weight_decay)
        self.seed = seed
        self.node_devices = dict(node_devices or {})
        self.replicas: dict[Replica, tuple[nn.Module, torch.optim.Optimizer]] = {}
        self.store: dict[str, dict[Tag, object]] = defaultdict(dict)
        self.saved: dict[tuple[str, int, int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        # Weight stashing (plan.extra[STASH_WEIGHTS]): the weights a forward used, for its backward.
        self.stashed: dict[tuple[str, int, int, int, int], dict[str, torch.Tensor]] = {}
        self.memory = MemoryMeter()  # per-node peak bytes; what it counts: engine/memory.py
        self.handlers: dict[str, Callable[[str, Action], None]] = {
            FORWARD: self._forward, BACKWARD: self._backward, STEP: self._step,
            SNAPSHOT: self._snapshot, AGGREGATE: self._aggregate, LOAD: self._load,
        }
        self.loss_sum = 0.0
        self.loss_count = 0
        self.compute_wall_s = 0.0  # host seconds spent inside compute actions this epoch
        self.shared: set[tuple[str, Tag]] = set()  # weights read by several compute actions of a node
        self.epoch_batches: dict[int, list[np.ndarray]] = {}
        self.cursor: dict[tuple[int, int], int] = {}
        self.epoch = 0
        self.augment_table: np.ndarray | None = None  # per sample (row, column, flip) of this epoch
        # Recovery copies a node received (kind "backup"): node -> state key -> ((epoch, step), tensor).
        self.backups: dict[str, dict[str, tuple[tuple[int, int], torch.Tensor]]] = defaultdict(dict)

    def use_plan(self, plan: Plan) -> None:
        """Parts of `plan` from now on (engine/carry.py moves the weights when a plan changes)."""
        self.plan = plan
        # One template per part id: owners with their own cuts (plan.layouts) add part ids.
        self.template = [part for cuts in plan.layouts() for part in split_model(self.model, cuts)]

    # -- epoch life cycle ------------------------------------------------------------
    def begin_segment(self, schedule: Schedule) -> None:
        """Make the replicas `schedule` needs and this executor lacks (fresh from the template)."""
        for replica in schedule.replicas:
            if replica not in self.replicas and self.node in (None, replica.node):
                module = copy.deepcopy(self.template[replica.part]).to(self.device(replica.node))
                self.replicas[replica] = (module, self.optimizer(module.parameters()))
        self.shared = _shared_weights(schedule)

    def begin_epoch(self, epoch: int, schedule: Schedule) -> None:
        self.begin_segment(schedule)
        self.epoch = epoch
        self.augment_table = draws(len(self.dataset.y_train), epoch, self.seed) if self.dataset.augment else None
        self.epoch_batches = {
            owner: batches(self.shards[owner], self.plan.batch_size, epoch, self.seed)
            for owner, node in schedule.owners.items() if self.node in (None, node)
        }
        self.cursor.clear()
        self.loss_sum, self.loss_count = 0.0, 0
        self.compute_wall_s = 0.0
        self._begin_memory()

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
        with self._metered(node, action):  # the meter's bookkeeping stays outside the timed region
            start = self.clock()
            self.handlers[action.op](node, action)
            if cuda:
                torch.cuda.synchronize()
            measured = self.clock() - start
        self.compute_wall_s += measured
        return self.timing.duration(node, action, measured)

    def send(self, node: str, action: Action) -> tuple[object, int]:
        tag = action.tag
        assert tag is not None
        store = self.store[node]
        payload = store.pop(tag) if tag.kind in TRANSIENT_KINDS else store[tag]
        return payload, payload_bytes(payload)

    def receive(self, node: str, action: Action, payload: object) -> None:
        tag = action.tag
        assert tag is not None
        if tag.kind == "backup":  # kept for recovery beyond the store's life (engine/carry.py reads it)
            when = (self.epoch, tag.step)
            held = self.backups[node]
            for key, value in cast(State, payload).items():
                if key not in held or held[key][0] <= when:
                    held[key] = (when, value.detach().clone().cpu())
            return
        self.store[node][tag] = _to_device(payload, self.device(node))
        self.memory.measure(node, self.store[node])

    # -- memory ----------------------------------------------------------------------
    def _begin_memory(self) -> None:
        for replica in self.replicas:
            self._recount(replica)
        self.memory.begin_epoch({r.node for r in self.replicas})
        for dev in {d for d in self.node_devices.values() if d.type == "cuda"}:
            torch.cuda.reset_peak_memory_stats(dev)

    def _recount(self, replica: Replica) -> None:
        module, optimizer = self.replicas[replica]
        self.memory.refresh(replica, replica.node, module, optimizer)

    @contextmanager
    def _metered(self, node: str, a: Action) -> Iterator[None]:
        """Count the node's bytes around one compute action (engine/memory.py says what)."""
        store = self.store[node]
        key = (node, a.part, a.owner, a.step, a.mb)
        replica = Replica(node, a.part, a.replica)
        if a.op == FORWARD:
            with self.memory.saving(node, key, self.module(replica)):
                yield
            self.memory.hold(node, key, *self.saved[key])
        elif a.op == BACKWARD:
            incoming = next((store.get(t) for t in a.reads), None)
            yield
            self._recount(replica)
            self.memory.measure(node, store, *([incoming] if isinstance(incoming, torch.Tensor) else []))
            self.memory.release(key)
        else:
            yield
            if a.op == STEP:
                self._recount(replica)
        self.memory.measure(node, store)

    def memory_peaks(self) -> dict[str, int]:
        """Peak bytes per node this epoch, counted tensor by tensor (engine/memory.py)."""
        return self.memory.peaks()

    def cuda_peaks(self) -> dict[str, int]:
        """The CUDA allocator's peak this epoch per GPU, keyed by the nodes on it ("a+b").

        The allocator counts per process and device, so nodes emulated on one GPU share one
        figure; a real run (one process per node) gives each node its own.
        """
        shared: dict[torch.device, list[str]] = {}
        for node, dev in sorted(self.node_devices.items()):
            if dev.type == "cuda":
                shared.setdefault(dev, []).append(node)
        return {"+".join(nodes): int(torch.cuda.max_memory_allocated(dev)) for dev, nodes in shared.items()}

    # -- handlers --------------------------------------------------------------------
    def module(self, replica: Replica) -> nn.Module:
        return self.replicas[replica][0]

    def _take(self, node: str, tag: Tag) -> object:
        """Read `tag` from the node's store, consuming it as ir.py's lifetimes say."""
        store = self.store[node]
        if tag.kind in TRANSIENT_KINDS or (tag.kind == "weights" and (node, tag) not in self.shared):
            return store.pop(tag)
        return store[tag]

    def _forward(self, node: str, a: Action) -> None:
        module = self.module(Replica(node, a.part, a.replica))
        module.train()
        store = self.store[node]
        labels = None
        for tag in a.reads:
            if tag.kind == "data":
                inp, labels = self._micro_batch(node, tag, a.samples)
            elif tag.kind == "act":
                inp = cast(torch.Tensor, self._take(node, tag)).detach().requires_grad_()
            else:
                labels = cast(torch.Tensor, self._take(node, tag))
        key = (node, a.part, a.owner, a.step, a.mb)
        if self.plan.extra.get(STASH_WEIGHTS):  # this forward's own copy of the weights, kept for its backward
            stash = {name: p.detach().clone().requires_grad_() for name, p in module.named_parameters()}
            self.stashed[key] = stash
            out = torch.func.functional_call(module, {**dict(module.named_buffers()), **stash}, (inp,))
        else:
            out = module(inp)
        for tag in a.writes:
            if tag.kind == "label":
                store[tag] = labels
            elif tag.kind == "act":
                store[tag] = out.detach()
                self.saved[key] = (inp, out)
            else:  # the loss stays with the autograd state for the Backward
                assert labels is not None
                ce = F.cross_entropy(out, labels, reduction="sum")
                self.loss_sum += ce.item()
                self.loss_count += len(labels)
                self.saved[key] = (inp, ce / self._batch_len(a))

    def _backward(self, node: str, a: Action) -> None:
        key = (node, a.part, a.owner, a.step, a.mb)
        inp, out = self.saved.pop(key)
        if a.reads:
            out.backward(self._take(node, a.reads[0]))  # type: ignore[arg-type]
        else:  # a last part: the loss
            out.backward()
        stash = self.stashed.pop(key, None)
        if stash is not None:  # gradients of the stashed weights, applied to the current ones
            for name, p in self.module(Replica(node, a.part, a.replica)).named_parameters():
                grad = stash[name].grad
                if grad is not None:
                    p.grad = grad if p.grad is None else p.grad + grad
        for tag in a.writes:
            self.store[node][tag] = inp.grad

    def _step(self, node: str, a: Action) -> None:
        _, optimizer = self.replicas[Replica(node, a.part, a.replica)]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def _snapshot(self, node: str, a: Action) -> None:
        state = self.module(Replica(node, a.part, a.replica)).state_dict()
        copied = {k: v.detach().clone() for k, v in state.items()}
        for tag in a.writes:  # one copy under each tag (a recovery copy per receiver)
            self.store[node][tag] = copied

    def _aggregate(self, node: str, a: Action) -> None:
        """Each state key of the written tag's part, averaged over the sources that hold it."""
        states = [self._take(node, t) for t in a.reads]
        average = a.writes[0]
        keys = self.template[average.part].state_dict().keys()
        self.store[node][average] = average_states(states, a.weights, keys)  # type: ignore[arg-type]

    def _load(self, node: str, a: Action) -> None:
        state = self._take(node, a.reads[0])
        self.module(Replica(node, a.part, a.replica)).load_state_dict(state)  # type: ignore[arg-type]

    # -- data --------------------------------------------------------------------------
    def _micro_batch(self, node: str, data: Tag, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next `samples` of owner data.owner's mini-batch data.step (shard i is owner i's)."""
        batch = self.epoch_batches[data.owner][data.step]
        start = self.cursor.get((data.owner, data.step), 0)
        index = torch.as_tensor(batch[start:start + samples])
        self.cursor[(data.owner, data.step)] = start + samples
        dev = self.device(node)
        images = self.dataset.x_train[index]
        if self.augment_table is not None:
            images = augment(images, self.augment_table[index.numpy()])
        return images.to(dev), self.dataset.y_train[index].to(dev)

    def _batch_len(self, a: Action) -> int:
        samples = self.plan.shard_sizes[a.owner]
        return min(self.plan.batch_size, samples - a.step * self.plan.batch_size)

    # -- evaluation --------------------------------------------------------------------
    def global_model(self, schedule: Schedule, states: Mapping[Replica, State] | None = None) -> nn.Sequential:
        """The model FedAvg would give now: each part averaged over schedule.evaluate's replicas.

        `states` stands in for replicas this executor does not hold (a runtime node's peers).
        """
        others = states or {}
        if len(self.plan.layouts()) > 1:  # parts overlap (per-owner cuts): average each unit over its holders
            all_entries = [e for _, group in sorted(schedule.evaluate.items()) for e in group]
            held = [_to_device(others[r] if r in others else self.module(r).state_dict(), torch.device("cpu"))
                    for r, _ in all_entries]
            model = copy.deepcopy(self.model)
            model.load_state_dict(average_states(held, [w for _, w in all_entries]))  # type: ignore[arg-type]
            return model
        units: list[nn.Module] = []
        for part, entries in sorted(schedule.evaluate.items()):
            replica_states = [_to_device(others[r] if r in others else self.module(r).state_dict(), torch.device("cpu"))
                       for r, _ in entries]
            module = copy.deepcopy(self.template[part])
            module.load_state_dict(average_states(replica_states, [w for _, w in entries]))  # type: ignore[arg-type]
            units.extend(module)
        return nn.Sequential(*units)

    def evaluate(self, schedule: Schedule, batch_size: int = 512, states: Mapping[Replica, State] | None = None) -> float:
        model = self.global_model(schedule, states).eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(self.dataset.y_test), batch_size):
                x = self.dataset.x_test[start:start + batch_size]
                y = self.dataset.y_test[start:start + batch_size]
                correct += int((model(x).argmax(1) == y).sum())
        return correct / max(1, len(self.dataset.y_test))


def _shared_weights(schedule: Schedule) -> set[tuple[str, Tag]]:
    """(node, weights tag) read by more than one compute action of the node: kept, not consumed."""
    readers: dict[tuple[str, Tag], int] = defaultdict(int)
    for node, _, action in schedule.actions():
        if action.is_compute:
            for tag in action.reads:
                if tag.kind == "weights":
                    readers[(node, tag)] += 1
    return {key for key, count in readers.items() if count > 1}


def _to_device(payload: object, device: torch.device) -> object:
    if isinstance(payload, torch.Tensor):
        return payload.to(device)
    if isinstance(payload, Mapping):
        return {k: _to_device(v, device) for k, v in payload.items()}
    return payload
