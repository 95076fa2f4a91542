"""A node that does not coordinate: it joins, follows the coordinator's orders and reports each epoch.

Every node rebuilds the same dataset, partition, initial model and schedules from the config
and seed, so only the orders, the epoch's data messages and the reports travel: a device
loads its own shard and the server never ships training data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from splitpipe.engine.carry import carry_over, momentum_of, set_momentum
from splitpipe.engine.mark import Mark
from splitpipe.runtime.handoff import share
from splitpipe.runtime.liveness import SILENCE_S, Heartbeat
from splitpipe.runtime.mailbox import EpochAborted, Mailbox, PeerLost, RemoteFailure
from splitpipe.runtime.node import NodeRunner, Speed, anchor_speed, node_executor
from splitpipe.runtime.protocol import (
    assignment,
    config_body,
    gather_tag,
    load_tags,
    momentum_tag,
    spans_to_body,
)
from splitpipe.runtime.recovery import peers_of, replanned, send_fences
from splitpipe.runtime.transport import Transport
from splitpipe.schedules import Segment, build_schedule
from splitpipe.schedules.ir import Replica, Schedule
from splitpipe.setup import Setup

__all__ = ["run_member"]

log = logging.getLogger("splitpipe.runtime")


def run_member(setup: Setup, name: str, transport: Transport, coordinator: str, address: str = "", *,
               timeout: float = 600.0, speed: Speed = 1.0, silence_s: float = SILENCE_S) -> None:
    """Take part in one run as node `name` until the coordinator says stop.

    `address` is where the other nodes reach this one (HOST:PORT). Any failure here is
    reported to the coordinator before it is raised, so that the run stops at once; a
    coordinator silent for `silence_s` seconds, or one the heartbeat cannot reach, counts as gone.
    """
    member = _Member(setup, name, transport, coordinator, timeout, speed, silence_s)
    try:
        with Heartbeat(transport, [coordinator], lost=member.mailbox.unreachable):
            member.join(address)
            member.serve()
    except RemoteFailure:
        raise
    except Exception as exc:
        try:
            transport.send_control(coordinator, {"type": "error", "node": name, "message": str(exc) or repr(exc)})
        except Exception:  # the coordinator may be gone too; the original error matters
            pass
        raise


class _Member:
    def __init__(self, setup: Setup, name: str, transport: Transport, coordinator: str, timeout: float,
                 speed: Speed, silence_s: float) -> None:
        self.setup, self.name, self.transport = setup, name, transport
        self.coordinator, self.timeout, self.speed = coordinator, timeout, speed
        self.mailbox = Mailbox(transport, silence_s, coordinator, setup.topology.names)
        self.mailbox.watch(coordinator, from_first_word=True)
        self._received = 0.0  # arrival time of the last order
        self.prepared = -1
        self.save = False  # a checkpoint follows the prepared epoch: send every replica's state
        self.schedule: Schedule | None = None
        self.executor = node_executor(setup, name)
        self.plan = setup.plan  # without the owners that died
        self.saved: Mark | None = None  # the state at the prepared segment's start
        self.segment = Segment(0)
        self.shards = dict(zip(setup.plan.owners, setup.shards))

    def join(self, address: str) -> None:
        """(1) hello, (2) the assignment: check it against this node's own schedule, learn the peers."""
        role = self.setup.topology.node(self.name).role
        self.transport.send_control(self.coordinator, {
            "type": "hello", "name": self.name, "role": role, "address": address,
            "config": config_body(self.setup.config),
        })
        body = self._order("the assignment")
        if body["type"] != "assign":
            raise RuntimeError(f"{self.name} expected its assignment from {self.coordinator}, got '{body['type']}'")
        own = assignment(build_schedule(self.setup.plan, 0), self.name, {}, self.setup.config.seed,
                         self.setup.config.epochs)
        for key in ("lanes", "parts", "shards", "seed", "epochs"):
            if body[key] != own[key]:
                raise RuntimeError(f"{self.name}'s assignment says {key} {body[key]}, its own plan says {own[key]}: "
                                   "do all nodes run the same splitpipe version and config?")
        for peer, peer_address in dict(body["peers"]).items():  # type: ignore[call-overload]
            if peer != self.coordinator:  # reached where this node was told to find it, whatever it advertises
                self.mailbox.add_peer(str(peer), str(peer_address))
        log.info("%s: joined; lanes %s, parts %s, data shards %s", self.name, own["lanes"], own["parts"], own["shards"])

    def serve(self) -> None:
        while True:
            try:
                if self._obey(self._order("orders")):
                    return
            except EpochAborted as aborted:
                self.rewind(aborted.epoch, aborted.dead)
            except PeerLost as lost:  # the coordinator decides: it calls the epoch off, or the run
                if lost.node == self.coordinator:
                    raise
                self.transport.send_control(self.coordinator, {"type": "error", "node": lost.node,
                                                               "message": str(lost), "detected": lost.detected})

    def _obey(self, body: dict) -> bool:
        """Carry out one order; True when it was the last."""
        kind = body["type"]
        if kind == "ping":
            self.transport.send_control(self.coordinator, {
                "type": "pong", "seq": body["seq"], "t0": body["t0"], "t1": self._received, "t2": time.time(),
            })
        elif kind == "prepare":
            stop = body.get("stop")
            self.prepare(Segment(int(body["epoch"]), int(body.get("start", 0)), None if stop is None else int(stop)),
                         bool(body.get("save", False)))
        elif kind == "start":
            self.run_epoch(int(body["epoch"]), float(body["at"]), float(body.get("since", body["at"])))
        elif kind == "adopt":
            cuts = body.get("cuts")
            self.adopt([str(n) for n in body["dead"]], [str(n) for n in body["owners"]], body.get("peers", {}),
                       None if cuts is None else tuple(int(c) for c in cuts), bool(body.get("handoff", False)))
        elif kind == "load":
            self.load(int(body["epoch"]), body["replicas"])
        elif kind == "share":
            share(self.executor, self.transport, self.coordinator, int(body["epoch"]),
                  self.setup.topology.names.index(self.name))
        elif kind == "stop":
            log.info("%s: stopped by %s", self.name, self.coordinator)
            return True
        else:
            raise RuntimeError(f"{self.name} got an unexpected '{kind}' from {self.coordinator}")
        return False

    def prepare(self, segment: Segment, save: bool = False) -> None:
        """(4) build the segment's schedule and replicas before the clock starts (the first epoch's take
        seconds); mark the state there, where a rewind goes back to."""
        epoch = segment.epoch
        self.save = save
        self.segment = segment
        self.schedule = build_schedule(self.plan, segment)
        self.mailbox.expect(self.schedule)
        if segment.start == 0:
            self.executor.begin_epoch(epoch, self.schedule)
        else:
            self.executor.begin_segment(self.schedule)
        self.saved = Mark.take(self.executor)
        self.prepared = epoch
        self.transport.send_control(self.coordinator, {"type": "ready", "epoch": epoch, "start": segment.start})

    def run_epoch(self, epoch: int, at: float, since: float | None = None) -> None:
        """(4) run the prepared segment from the agreed instant, (5) report its spans; after an epoch's
        last segment also its loss and weights. `since`: training's first start, where --speed-change's
        T counts from (this node's clock; `at` if not given)."""
        if self.prepared != epoch:
            raise RuntimeError(f"{self.name} was told to start epoch {epoch} but prepared epoch {self.prepared}")
        schedule = self.schedule
        assert schedule is not None
        anchor_speed(self.speed, at if since is None else since)
        delay = at - time.time()
        if delay > 0:
            time.sleep(min(delay, self.timeout))
        log.info("%s: epoch %d started%s", self.name, epoch,
                 "" if self.segment.start == 0 else f" at step {self.segment.start}")
        runner = NodeRunner(self.name, schedule, self.executor, self.mailbox, self.plan.topology, epoch,
                            timeout=self.timeout, speed=self.speed, deadline=self.setup.config.round_deadline)
        spans = runner.run()
        if not self.segment.ends_epoch:
            self.transport.send_control(self.coordinator, {
                "type": "done", "epoch": epoch, "spans": spans_to_body(spans), "loss_sum": 0.0, "loss_count": 0,
                "sent": []})
            return
        self.executor.end_epoch()
        everything = self.save or epoch == self.setup.config.epochs - 1
        sent = self._send_weights(schedule, everything, epoch)
        moments = self._send_momentum(sent, epoch) if self.save else []
        self.transport.send_control(self.coordinator, {
            "type": "done", "epoch": epoch, "spans": spans_to_body(spans), "loss_sum": self.executor.loss_sum,
            "loss_count": self.executor.loss_count, "sent": [[r.part, r.replica] for r in sent],
            "moments": [[r.part, r.replica] for r in moments], "missed": sorted(runner.missed),
        })

    def rewind(self, epoch: int, dead: list[str]) -> None:
        """recovery.py (3): back to the segment's mark, fence the receivers, await the senders' fences."""
        log.info("%s: epoch %d called off (%s died); rewinding", self.name, epoch, ", ".join(dead))
        for node in dead:
            self.mailbox.forget(node)
        sends, receives = peers_of(self.schedule, self.name)
        send_fences(self.transport, sends | {self.coordinator}, dead)
        self.mailbox.await_fences(receives - set(dead), self.timeout)
        self.mailbox.clear_data()
        if self.saved is not None and self.saved.plan is self.executor.plan:
            self.saved.restore(self.executor)
        self.prepared = -1
        self.transport.send_control(self.coordinator, {"type": "rewound", "epoch": epoch})

    def adopt(self, dead: list[str], owners: list[str], peers: dict[str, str],
              cuts: tuple[int, ...] | None = None, handoff: bool = False) -> None:
        """recovery.py (5): the coordinator's re-plan, made here from the config; own replicas carried over.

        `peers`: nodes back after a restart, and where they listen now. A node that is itself
        back holds no replicas yet: the coordinator sends their state next (protocol.py (9)).
        `cuts`: the coordinator's (a re-partition from measured capacity, which only it measures).
        `handoff`: the coordinator rebuilt every replica (runtime/handoff.py) and sends each its state
        next, so none is made from this node's own copies.
        """
        for node, address in peers.items():
            if node != self.name:
                self.mailbox.rejoin(str(node), str(address))
        plan, moved = replanned(self.setup.plan, self.plan, dead)
        if cuts is not None and cuts != plan.cuts:
            if len(cuts) != len(plan.cuts):
                raise RuntimeError(f"{self.name}'s re-plan has {len(plan.cuts)} cuts, the coordinator sent {list(cuts)}")
            plan = replace(plan, cuts=cuts)
        if list(plan.owners) != owners:
            raise RuntimeError(f"{self.name}'s re-plan without {', '.join(dead)} has owners {list(plan.owners)}, "
                               f"the coordinator's has {owners}")
        replicas = build_schedule(plan, 0).replicas if self.executor.replicas else ()
        lost = set(self.plan.topology.names) - set(plan.topology.names)  # layers only they held: sent next
        if handoff:
            lost = set(self.plan.topology.names)
        carry_over(self.executor, plan, moved, replicas, [self.shards[n] for n in plan.owners], lost)
        self.plan, self.schedule = plan, None

    def _send_weights(self, schedule: Schedule, everything: bool, epoch: int) -> list[Replica]:
        """Weights of this node's replicas the global model uses (after the last epoch: of all of them)."""
        wanted = schedule.replicas if everything else [r for entries in schedule.evaluate.values() for r, _ in entries]
        mine = sorted({r for r in wanted if r.node == self.name}, key=lambda r: (r.part, r.replica))
        for replica in mine:
            state = {k: v.detach().cpu() for k, v in self.executor.module(replica).state_dict().items()}
            self.transport.send(self.coordinator, gather_tag(replica, epoch), state)
        return mine

    def _send_momentum(self, replicas: list[Replica], epoch: int) -> list[Replica]:
        """SGD momentum of `replicas`, for the coordinator's checkpoint."""
        for replica in replicas:
            module, optimizer = self.executor.replicas[replica]
            state = {k: v.detach().cpu() for k, v in momentum_of(module, optimizer).items()}
            self.transport.send(self.coordinator, momentum_tag(replica, epoch), state)
        return replicas

    def load(self, epoch: int, replicas: object) -> None:
        """protocol.py (9): this node's replicas for `epoch` from the state the coordinator sends (a resume,
        a rejoin; only some keys when it takes over a dead node's layers)."""
        schedule = build_schedule(self.plan, epoch)
        self.executor.begin_segment(schedule)
        for part, index in replicas:  # type: ignore[attr-defined]
            replica = Replica(self.name, int(part), int(index))
            if replica not in self.executor.replicas:
                raise RuntimeError(f"{self.name} was sent the state of {replica}, which its plan does not hold")
            module, optimizer = self.executor.replicas[replica]
            weights, momentum = (self.mailbox.take_data(tag, self.timeout, f"the state of {replica}").payload
                                 for tag in load_tags(replica, epoch))
            module.load_state_dict({**module.state_dict(), **weights})  # type: ignore[dict-item]
            set_momentum(module, optimizer, momentum)  # type: ignore[arg-type]
        log.info("%s: replicas loaded for epoch %d", self.name, epoch)

    def _order(self, what: str) -> dict:
        message = self.mailbox.control(self.timeout, f"{what} from {self.coordinator}")
        if message.src != self.coordinator:
            raise RuntimeError(f"{self.name} takes orders from {self.coordinator} only, not from {message.src}")
        self._received = message.received_at
        return message.control  # type: ignore[return-value]
