"""Layers that change node when a real run re-plans (FTPipeHD's DP over the survivors): every new
replica rebuilt at the coordinator from the nearest surviving copy, then sent to its node.

In the emulator one executor holds every replica, so engine/carry.py sees every copy at once.
Real nodes each hold their own, so the coordinator gathers them first (protocol.py (10))::

    coordinator                              each surviving node (rewound to the epoch's start)
      (1) share(epoch) ------------------->    its replicas' weights and momentum and the
      <---------- data + shared(replicas, backups)  recovery copies it received (with their step)
      (2) carry.rebuild: each key from the same owner's old replica, else the freshest recovery
          copy a survivor holds (the next stage's, else the central node's), else the model
          handed out at the start: the emulator's rule, over the gathered copies
      (3) adopt(dead, owners) ------------->    the same re-plan from the config
      (4) load(epoch, replicas) ----------->    the rebuilt weights and momentum of its replicas

Everything goes through the coordinator (the central node), not from stage to stage as the
paper's workers fetch layers: a re-plan is rare, the parts are small, and one path serves
every case (a dead node's layers, layers moving between survivors, the central node's own).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence

import torch

from splitpipe.engine.carry import freshest, momentum_of, pool, rebuild, set_momentum
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.runtime.mailbox import Mailbox, RemoteFailure
from splitpipe.runtime.protocol import backups_tag, share_tags
from splitpipe.runtime.transport import Message, Transport
from splitpipe.schedules.ir import Replica

__all__ = ["share", "gather", "held", "rebuilt", "install"]

log = logging.getLogger("splitpipe.runtime")

State = dict[str, torch.Tensor]
#: Replica -> (weights, momentum), and node -> key -> ((epoch, step), tensor): what survived.
States = dict[Replica, tuple[State, State]]
Backups = dict[str, dict[str, tuple[tuple[int, int], torch.Tensor]]]


def held(executor: TensorExecutor) -> tuple[States, Backups]:
    """What `executor` holds now: its replicas' weights and momentum, its recovery copies."""
    states = {r: ({k: v.detach().cpu().clone() for k, v in m.state_dict().items()},
                  {k: v.detach().cpu().clone() for k, v in momentum_of(m, o).items()})
              for r, (m, o) in executor.replicas.items()}
    return states, {node: dict(copies) for node, copies in executor.backups.items()}


def share(executor: TensorExecutor, transport: Transport, coordinator: str, epoch: int, number: int) -> None:
    """(1) on a node (`number`: its index in the run's topology): send the coordinator its state,
    then `shared` naming what was sent."""
    states, backups = held(executor)
    log.info("%s: sharing its state with %s for a re-plan in epoch %d", executor.node, coordinator, epoch)
    for replica, (weights, momentum) in sorted(states.items(), key=lambda item: (item[0].part, item[0].replica)):
        for tag, state in zip(share_tags(replica, epoch), (weights, momentum)):
            transport.send(coordinator, tag, state)
    copies = backups.get(executor.node or "", {})
    transport.send(coordinator, backups_tag(number, epoch), {key: value for key, (_, value) in copies.items()})
    transport.send_control(coordinator, {
        "type": "shared", "epoch": epoch, "replicas": [[r.part, r.replica] for r in states],
        "backups": {key: list(when) for key, (when, _) in copies.items()},
    })


def gather(mailbox: Mailbox, members: Sequence[str], names: Sequence[str], epoch: int,
           timeout: float, arrived: list[Message] | None = None) -> tuple[States, Backups]:
    """(1) at the coordinator: every member's state, after `share` orders went out to them
    (`names`: the run's nodes, whose indices number the recovery copies' tags); `arrived`
    collects the data messages (for the move's link spans)."""
    arrived = [] if arrived is None else arrived
    states: States = {}
    backups: Backups = {}
    waiting = set(members)
    while waiting:
        message = mailbox.control(timeout, f"the state of {', '.join(sorted(waiting))}")
        body, src = message.control or {}, message.src
        if body.get("type") != "shared" or src not in waiting or body.get("epoch") != epoch:
            raise RemoteFailure(src, f"sent '{body.get('type')}' when its state for epoch {epoch} was due")
        waiting.discard(src)
        try:
            replicas = [Replica(src, int(part), int(index)) for part, index in body["replicas"]]
            stamps = {str(k): (int(when[0]), int(when[1])) for k, when in dict(body["backups"]).items()}
        except (TypeError, ValueError, IndexError) as exc:
            raise RemoteFailure(src, f"sent a bad list of its state: {exc}") from None
        for replica in replicas:
            weights, momentum = (mailbox.take_data(tag, timeout, f"the state of {replica}")
                                 for tag in share_tags(replica, epoch))
            arrived += [weights, momentum]
            states[replica] = (weights.payload, momentum.payload)  # type: ignore[assignment]
        message = mailbox.take_data(backups_tag(names.index(src), epoch), timeout, f"the recovery copies of {src}")
        arrived.append(message)
        copies = message.payload
        if set(copies) != set(stamps):  # type: ignore[arg-type]
            raise RemoteFailure(src, "sent recovery copies other than the ones it listed")
        backups[src] = {key: (stamps[key], value) for key, value in copies.items()}  # type: ignore[union-attr]
    return states, backups


def rebuilt(executor: TensorExecutor, states: States, backups: Backups, replicas: Sequence[Replica],
            owners: Mapping[int, int], lost: Collection[str]) -> States:
    """(2) the new plan's `replicas` (`executor` already uses that plan: its templates are the new parts)."""
    weights, momentum = pool(((r, w, m) for r, (w, m) in states.items()), lost)
    templates = [part.state_dict() for part in executor.template]
    return rebuild(replicas, templates, owners, weights, momentum, freshest(backups, lost), lost)


def install(executor: TensorExecutor, states: States) -> None:
    """The rebuilt state into `executor`'s own replicas of the new plan (the coordinator's)."""
    for replica, (module, optimizer) in executor.replicas.items():
        if replica in states:
            weights, momentum = states[replica]
            module.load_state_dict(weights)
            optimizer.state.clear()
            set_momentum(module, optimizer, momentum)
