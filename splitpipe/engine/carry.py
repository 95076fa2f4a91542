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
from collections.abc import Collection, Iterable, Mapping, Sequence

import torch

from splitpipe.engine.emulate import TensorExecutor, average_states
from splitpipe.plan import Plan
from splitpipe.schedules.ir import Replica

__all__ = ["carry_over", "momentum_of", "set_momentum", "pool", "rebuild", "freshest"]

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
    weights, momentum = pool(((r, m.state_dict(), momentum_of(m, o)) for r, (m, o) in executor.replicas.items()), lost)
    batches, cursor = executor.epoch_batches, executor.cursor
    executor.shards = list(shards)  # type: ignore[arg-type]
    executor.epoch_batches = {new: batches[old] for old, new in owners.items() if old in batches}
    executor.cursor = {(owners[lane], step): at for (lane, step), at in cursor.items() if lane in owners}
    executor.use_plan(plan)
    executor.replicas = {}
    mine = [r for r in replicas if executor.node in (None, r.node)]
    templates = [part.state_dict() for part in executor.template]
    states = rebuild(mine, templates, owners, weights, momentum, freshest(executor.backups, lost), lost, aggregated)
    for replica, (state, moments) in states.items():
        fresh = copy.deepcopy(executor.template[replica.part]).to(executor.device(replica.node))
        fresh.load_state_dict(state)
        optimizer = executor.optimizer(fresh.parameters())
        set_momentum(fresh, optimizer, moments)
        executor.replicas[replica] = (fresh, optimizer)


def pool(states: Iterable[tuple[Replica, Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]]],
         lost: Collection[str] = ()) -> tuple[dict[int, State], dict[int, State]]:
    """Weights and momentum of every (replica, weights, momentum) outside `lost`, by replica index
    (an owner's copy of the model is every node's replica of that index)."""
    weights: dict[int, State] = defaultdict(dict)  # old replica index -> key -> tensor
    momentum: dict[int, State] = defaultdict(dict)
    for replica, held, moments in states:
        if replica.node in lost:
            continue
        weights[replica.replica].update({k: v.detach().clone() for k, v in held.items()})
        momentum[replica.replica].update(moments)
    return weights, momentum


def rebuild(replicas: Sequence[Replica], templates: Sequence[Mapping[str, torch.Tensor]], owners: Mapping[int, int],
            weights: Mapping[int, State], momentum: Mapping[int, State], backups: State,
            lost: Collection[str] = (), aggregated: State | None = None) -> dict[Replica, tuple[State, State]]:
    """Weights and momentum of each of `replicas` (of part `templates[part]`'s keys), each key from
    its nearest copy: the same owner's old replica, a recovery copy, the average, the aggregate,
    the initial model. The emulator and a real run's coordinator both rebuild through this."""
    old_of = {new: old for old, new in owners.items()}
    out = {}
    for replica in replicas:
        initial = dict(templates[replica.part])
        source = old_of.get(replica.replica, -1)  # -1: no old copy of its own, the average
        state = {key: _nearest(key, source, weights, backups, initial, lost, aggregated or {}) for key in initial}
        out[replica] = (state, {k: v for k, v in momentum.get(source, {}).items() if k in initial})
    return out


def freshest(backups: Mapping[str, Mapping[str, tuple[tuple[int, int], torch.Tensor]]], lost: Collection[str] = ()) -> State:
    """The freshest recovery copy of each key held by a surviving node (node -> key -> (when, tensor))."""
    fresh: dict[str, tuple[tuple[int, int], torch.Tensor]] = {}
    for node, held in backups.items():
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
