"""Memory per node: the peak bytes a node holds in weights, gradients, optimizer state,
saved activations and messages, counted tensor by tensor.

What is counted, per node, each storage once (views and shared storages are deduplicated
by the address of their storage):

1. parameters and buffers of every replica on the node;
2. gradients present (`.grad` is set by a Backward and dropped by the Step);
3. optimizer state tensors (SGD momentum buffers, from the first Step on);
4. saved activations of every Forward whose Backward has not run yet: the tensors autograd
   saves for the backward (seen through `torch.autograd.graph.saved_tensors_hooks`, the
   loss's included), plus the part's input and output, which the node keeps for the
   backward; parameters and buffers are not counted twice. The hook only keeps each
   tensor (a Python call per saved tensor is what every Forward pays); their storages are
   looked up once when the Forward ends, which halved the meter's cost per VGG-5 unit
   (bench/meter_hooks.py, docs/planner.md "Per action"). Kept until then, a tensor saved
   and dropped inside the Forward (a discarded branch) cannot lend its address to another;
5. the node's store: activations, gradients, labels and weights received or produced and
   not yet consumed, plus the incoming gradient while its Backward runs.

The figure is taken after every Forward, Step, Aggregate, Load and Receive, and at the end of
every Backward before its forward's activations are released (autograd frees them during
the backward; counting them all makes this an upper bound of the backward's own peak). Not
counted: autograd's temporaries inside one operation, the allocator's caching and
fragmentation, the CUDA context, the dataset and Python objects. So it is the memory a
real node must hold, not what its process would show; on CUDA the executor reads the
allocator's peak besides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from itertools import chain
from typing import Any

import torch
from torch import nn

__all__: list[str] = []

Storages = dict[int, int]  # storage address -> bytes


def storage_of(tensor: torch.Tensor) -> tuple[int, int] | None:
    """(address, bytes) of the tensor's storage; None for a tensor without one (sparse, meta)."""
    try:
        storage = tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None
    address = storage.data_ptr()
    if address == 0 and storage.device.type == "meta":  # a meta storage's address is 0; `.device` costs ~1 us
        return None
    return address, storage.nbytes()


def own_storages(module: nn.Module) -> set[int]:
    """Storage addresses of `module`'s parameters and buffers: those of `parameters()` and
    `buffers()`, read from each submodule's own dicts (the generators cost ~16 us a VGG-5
    unit, this ~5)."""
    own: set[int] = set()
    stack: list[nn.Module | None] = [module]
    visited: set[int] = set()
    while stack:
        m = stack.pop()
        if m is None or id(m) in visited:
            continue
        visited.add(id(m))
        for param in m._parameters.values():
            if param is not None:
                own.add(param.untyped_storage().data_ptr())
        for buffer in m._buffers.values():
            if buffer is not None:
                own.add(buffer.untyped_storage().data_ptr())
        stack.extend(m._modules.values())
    return own


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def tensors_in(payload: object) -> Iterator[torch.Tensor]:
    """The tensors of a store entry: a tensor, or a (state) dict of tensors."""
    if isinstance(payload, torch.Tensor):
        yield payload
    elif isinstance(payload, Mapping):
        for value in payload.values():
            yield from tensors_in(value)


def static_bytes(module: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Parameters, buffers, gradients present and optimizer state of one replica."""
    total = sum(t.numel() * t.element_size() for t in chain(module.parameters(), module.buffers()))
    total += sum(p.grad.numel() * p.grad.element_size() for p in module.parameters() if p.grad is not None)
    if optimizer is not None:
        for state in optimizer.state.values():
            total += sum(t.numel() * t.element_size() for t in tensors_in(state))
    return total


class _Saving:
    """`MemoryMeter.saving`'s block. Its hook only keeps each saved tensor; their storages are
    looked up when the block ends, each tensor object once. (A class: a generator's context
    costs a few us more, and every Forward pays it.)"""

    def __init__(self, meter: MemoryMeter, node: str, key: Hashable, module: nn.Module) -> None:
        self.meter, self.node, self.key, self.module = meter, node, key, module
        self.saved: list[torch.Tensor] = []  # the hook is a closure over this list, not a bound method: no cycle for the GC
        saved = self.saved

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            saved.append(tensor)
            return tensor

        self.hooks = torch.autograd.graph.saved_tensors_hooks(pack, _unpack)

    def __enter__(self) -> None:
        self.own = own_storages(self.module)
        self.hooks.__enter__()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.hooks.__exit__()
        if kind is not None:
            return
        own, seen = self.own, {}
        for tensor in {id(t): t for t in self.saved}.values():
            found = storage_of(tensor)
            if found is not None and found[0] not in own:
                seen[found[0]] = found[1]
        self.saved.clear()
        self.meter._add(self.node, self.key, seen)


class MemoryMeter:
    """Tracks each node's bytes as actions run and keeps the peak of the epoch."""

    def __init__(self) -> None:
        self.static: dict[Hashable, tuple[str, int]] = {}  # replica -> (node, bytes)
        self.node_static: dict[str, int] = defaultdict(int)
        self.forwards: dict[Hashable, tuple[str, Storages]] = {}  # forward key -> (node, storages)
        self.refs: dict[str, dict[int, list[int]]] = defaultdict(dict)  # node -> address -> [count, bytes]
        self.held: dict[str, int] = defaultdict(int)  # node -> bytes of pending forwards
        self.peak: dict[str, int] = {}

    # -- weights, gradients, optimizer state ----------------------------------------------
    def refresh(self, replica: Hashable, node: str, module: nn.Module,
                optimizer: torch.optim.Optimizer | None) -> None:
        """Recount one replica's static bytes (after a Backward, a Step, at the epoch's start)."""
        _, old = self.static.get(replica, (node, 0))
        new = static_bytes(module, optimizer)
        self.static[replica] = (node, new)
        self.node_static[node] += new - old

    def begin_epoch(self, nodes: Iterable[str]) -> None:
        self.peak = {node: self.node_static.get(node, 0) for node in nodes}

    # -- saved activations -------------------------------------------------------------
    def saving(self, node: str, key: Hashable, module: nn.Module) -> AbstractContextManager[None]:
        """Count what autograd saves for the backward inside this block as forward `key`'s."""
        return _Saving(self, node, key, module)

    def hold(self, node: str, key: Hashable, *tensors: torch.Tensor) -> None:
        """Count `tensors` (a part's input and output) as held by forward `key` until its backward."""
        found = (storage_of(t) for t in tensors)
        self._add(node, key, dict(f for f in found if f is not None))

    def _add(self, node: str, key: Hashable, storages: Storages) -> None:
        _, mine = self.forwards.setdefault(key, (node, {}))
        refs = self.refs[node]
        for address, nbytes in storages.items():
            if address in mine:
                continue
            mine[address] = nbytes
            entry = refs.setdefault(address, [0, nbytes])
            if entry[0] == 0:
                self.held[node] += nbytes
            entry[0] += 1

    def release(self, key: Hashable) -> None:
        """The backward of forward `key` ran: its activations are free."""
        node, mine = self.forwards.pop(key)
        refs = self.refs[node]
        for address in mine:
            entry = refs[address]
            entry[0] -= 1
            if entry[0] == 0:
                self.held[node] -= entry[1]
                del refs[address]

    # -- the figure ----------------------------------------------------------------------
    def measure(self, node: str, store: Mapping[Any, object], *extra: torch.Tensor) -> int:
        """Bytes the node holds now (store and `extra` tensors included); update its peak."""
        refs = self.refs[node]
        loose: Storages = {}
        for tensor in chain(chain.from_iterable(tensors_in(v) for v in store.values()), extra):
            found = storage_of(tensor)
            if found is not None and found[0] not in refs:
                loose[found[0]] = found[1]
        total = self.node_static.get(node, 0) + self.held[node] + sum(loose.values())
        if total > self.peak.get(node, 0):
            self.peak[node] = total
        return total

    def peaks(self) -> dict[str, int]:
        return dict(sorted(self.peak.items()))

    def pending(self) -> int:
        return len(self.forwards)
