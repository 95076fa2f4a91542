"""Carrying weights over when a run's plan changes: every new replica starts from the nearest copy.

A part's state-dict keys name the model's units ("3.weight"), so a replica's weights are
pieces of its owner's model. When the plan changes (new cuts, an owner dropped), each new
replica takes every key it holds from the old replica of the same owner that held it, with
its optimizer state; a key no such replica held (a shared replica, SL's server part) is the
average of every old copy of it.

A node in `lost` (dead) takes its replicas with it. A key only it held comes back from the
freshest recovery copy a surviving node received (FTPipeHD's replication: the next stage's,
else the central node's), without momentum; else from the last aggregation's global model
(`aggregated`: the aggregator's copy, as when an MP-SL compute node dies); with no copy at all,
from the initial model the coordinator handed out at the start.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence

import torch

from splitpipe.engine.emulate import TensorExecutor, average_states
from splitpipe.plan import Plan
from splitpipe.schedules.ir import Replica

__all__ = ["carry_over", "momentum_of", "set_momentum"]

State = dict[str, torch.Tensor]


def momentum_of(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> State:
    """SGD's momentum buffers of `module`'s parameters, by parameter name (those that have one)."""
    state = ((name, optimizer.state.get(param, {}).get("momentum_buffer")) for name, param in module.named_parameters())
    return {name: buffer for name, buffer in state if buffer is not None}


def set_momentum(module: torch.nn.Module, optimizer: torch.optim.Optimizer, momentum: Mapping[str, torch.Tensor]) -> None:
    """Give `module`'s parameters the momentum buffers `momentum` names (copies, on their device)."""
    for name, param in module.named_parameters():
        if name in momentum:
            optimizer.state[param]["momentum_buffer"] = momentum[name].to(param.device).clone()


def carry_over(executor: TensorExecutor, plan: Plan, owners: Mapping[int, int], replicas: Sequence[Replica],
               shards: Sequence[object], lost: Collection[str] = (), aggregated: State | None = None) -> None:
    """Rebuild `executor`'s replicas as `replicas` of `plan`; `owners` maps old owner -> new owner,
    `shards` are the new plan's owners' training shards, `lost` the nodes whose state died with
    them. A new owner (one rejoining) starts from the average of every copy."""
    weights: dict[int, State] = defaultdict(dict)  # old replica index -> key -> tensor
    momentum: dict[int, State] = defaultdict(dict)
    for replica, (module, optimizer) in executor.replicas.items():
        if replica.node in lost:
            continue
        weights[replica.replica].update({k: v.detach().clone() for k, v in module.state_dict().items()})
        momentum[replica.replica].update(momentum_of(module, optimizer))
    old_of = {new: old for old, new in owners.items()}
    batches, cursor = executor.epoch_batches, executor.cursor
    executor.shards = list(shards)  # type: ignore[arg-type]
    executor.epoch_batches = {new: batches[old] for old, new in owners.items() if old in batches}
    executor.cursor = {(owners[lane], step): at for (lane, step), at in cursor.items() if lane in owners}
    executor.use_plan(plan)
    executor.replicas = {}
    backups = _backups(executor, lost)
    for replica in replicas:
        if executor.node not in (None, replica.node):
            continue
        module = executor.template[replica.part]
        source = old_of.get(replica.replica, -1)  # -1: no old copy of its own, the average
        initial = module.state_dict()
        state = {key: _nearest(key, source, weights, backups, initial, lost, aggregated or {}) for key in initial}
        fresh = copy.deepcopy(module).to(executor.device(replica.node))
        fresh.load_state_dict(state)
        optimizer = executor.optimizer(fresh.parameters())
        set_momentum(fresh, optimizer, momentum.get(source, {}))
        executor.replicas[replica] = (fresh, optimizer)


def _backups(executor: TensorExecutor, lost: Collection[str]) -> State:
    """The freshest recovery copy of each key held by a surviving node."""
    fresh: dict[str, tuple[tuple[int, int], torch.Tensor]] = {}
    for node, held in executor.backups.items():
        if node in lost:
            continue
        for key, (when, value) in held.items():
            if key not in fresh or fresh[key][0] < when:
                fresh[key] = (when, value)
    return {key: value for key, (_, value) in fresh.items()}


def _nearest(key: str, source: int, weights: Mapping[int, State], backups: State, initial: State,
             lost: Collection[str], aggregated: State) -> torch.Tensor:
    own = weights.get(source, {})
    if key in own:
        return own[key]
    if key in backups:
        return backups[key]
    copies = [state for state in weights.values() if key in state]
    if not copies and key in aggregated:
        return aggregated[key]
    if not copies and lost:  # no copy survives the death: the model handed out at the start
        return initial[key]
    if not copies:
        raise RuntimeError(f"no copy of '{key}' survives to carry over to the new plan")
    return average_states([{key: s[key]} for s in copies], [1 / len(copies)] * len(copies))[key]
