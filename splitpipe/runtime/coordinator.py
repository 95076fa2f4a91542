"""The coordinating node (the server, or the central node): it runs its own lanes like any node,
and besides gathers the others, estimates their clocks, starts each segment (a whole epoch, or
FTPipeHD's `--repartition-every` steps, after which its controller may re-partition) and merges
the traces.

Every phase has a timeout, and a node that fails or falls silent stops the run with its name,
unless it is a node the technique can go on without (a data owner, an MP-SL compute node, an
FTPipeHD worker): then the segment is called off and redone without it (runtime/recovery.py),
as the emulator does at a scripted failure. A dead node that says hello again rejoins at the next epoch boundary.
After a checkpoint's epoch it gathers every replica's weights and momentum and writes them;
a resumed run starts by sending each node its replicas' state (protocol.py (9)).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from splitpipe.checkpoint import (
    Checkpoint,
    Checkpoints,
    check_replicas,
    check_resumable,
    load_replicas,
    restore_rng,
    resumed_events,
    run_state,
    write_states,
)
from splitpipe.engine.carry import carry_over, momentum_of
from splitpipe.engine.emulate import average_states
from splitpipe.engine.events import NodeFailed
from splitpipe.engine.lanes import LINK_CATEGORY
from splitpipe.engine.mark import Mark
from splitpipe.loop import Faults, run_loop
from splitpipe.plan import Plan
from splitpipe.runtime import handoff
from splitpipe.runtime.address import CONNECT_S, probe
from splitpipe.runtime.clock import ClockOffset, ClockSample, estimate_offset
from splitpipe.runtime.liveness import REPORTED, SILENCE_S, Heartbeat
from splitpipe.runtime.mailbox import Mailbox, PeerLost, PhaseTimeout, RemoteFailure
from splitpipe.runtime.node import NodeRunner, Speed, anchor_speed, node_executor
from splitpipe.runtime.protocol import (
    assignment,
    config_mismatch,
    gather_tag,
    load_tags,
    momentum_tag,
    spans_from_body,
)
from splitpipe.runtime.recovery import can_drop, peers_of, replanned, send_fences
from splitpipe.runtime.transport import Message, Transport
from splitpipe.runtime.transport.base import payload_nbytes
from splitpipe.schedules import Segment, build_schedule, technique
from splitpipe.schedules.ir import AGGREGATE, Replica, Schedule
from splitpipe.setup import Setup, report_header, setup_profiles
from splitpipe.span import Span

__all__ = ["Coordinator", "ClusterResult"]

log = logging.getLogger("splitpipe.runtime")

State = dict[str, torch.Tensor]
Progress = Callable[[int, dict[str, object]], None]


@dataclass
class ClusterResult:
    """The run's report (engine "distributed"), merged spans, and every replica's final weights."""

    report: dict[str, object]
    spans: list[Span]
    states: dict[Replica, State] = field(default_factory=dict)
    model: nn.Module | None = None
    """The global model at the end (each part averaged as for evaluation)."""


class Coordinator:
    """Runs a whole cluster from node `name`: join, assign, clocks, epochs, stop.

    `timeout` bounds every phase (a node joining, a report coming in, no progress within an
    epoch); a node that joined and then falls silent for `silence_s` seconds fails the run
    sooner. `address` is where the others reach this node, passed on to them as a peer.
    `checkpoints`: gather every replica's weights and momentum after the epochs it names and
    write them (checkpoint.py); `resume`: go on from that checkpoint, sending each node its state.
    """

    def __init__(self, setup: Setup, name: str, transport: Transport, *, address: str = "",
                 timeout: float = 600.0, silence_s: float = SILENCE_S, pings: int = 8, speed: Speed = 1.0,
                 progress: Progress | None = None, checkpoints: Checkpoints | None = None,
                 resume: Checkpoint | None = None) -> None:
        self.setup, self.name, self.transport = setup, name, transport
        self.address, self.timeout, self.pings, self.speed = address, timeout, pings, speed
        self.progress, self.checkpoints, self.resume = progress, checkpoints, resume
        self.rows: list[dict[str, object]] = []  # the report's, a resumed run's earlier ones first
        self.events: list[dict[str, object]] = []  # the same for the report's events
        self.momenta: dict[Replica, State] = {}  # gathered for a checkpoint
        self.aggregated: State = {}  # the global model of the last aggregation
        self.mailbox = Mailbox(transport, silence_s, name, setup.topology.names)
        self.members = [n for n in setup.topology.names if n != name]
        self.addresses: dict[str, str] = {}
        self.offsets: dict[str, ClockOffset] = {name: ClockOffset(0.0, 0.0)}
        self.executor = node_executor(setup, name)
        self.states: dict[Replica, State] = {}
        self.loss = (0.0, 0)
        self.wall_s = 0.0
        self.dropped: list[str] = []  # data owners that died, in order
        self.missed: set[int] = set()  # owners left out of the last epoch's averages (round deadline)
        self.saved: Mark | None = None  # own state at the running epoch's start
        self.schedule: Schedule | None = None
        self._epoch = 0
        self.shards = dict(zip(setup.plan.owners, setup.shards))
        self.cuts: tuple[int, ...] = ()  # a resumed run's, where a re-partition had moved them
        self.began: float | None = None  # training's first start: --speed-change's T counts from it

    def run(self) -> ClusterResult:
        self.heartbeat = Heartbeat(self.transport, lost=self.mailbox.unreachable)  # to each node once it joined
        self.mailbox.on_return = self._returning
        try:
            dead = self._resumed_dead()
            self._join()
            self._assign()
            self._sync_clocks()
            first = self._load(self.resume, dead) if self.resume is not None else 0
            config = self.setup.config
            adapt = self.setup.technique.adapt(self.setup.plan, config) if self.setup.technique.adapt else None
            controller, steps = adapt if adapt is not None else (None, None)  # FTPipeHD's re-partition
            plan = self._costed(adapt is not None)
            result = run_loop(replace(plan, cuts=self.cuts or plan.cuts), self, range(first, config.epochs),
                              segment_steps=steps,
                              controller=controller, progress=self._after_epoch,  # type: ignore[arg-type]
                              faults=Faults(deadline=config.round_deadline, joined=self._rejoined,
                                            missed=self._missed, dead=tuple(dead)),
                              events=self.events)
            self._broadcast({"type": "stop"})
        except RemoteFailure as exc:
            self._broadcast({"type": "abort", "node": exc.node, "message": exc.reason})
            raise
        except BaseException as exc:
            self._broadcast({"type": "abort", "node": self.name, "message": str(exc) or repr(exc)})
            raise
        finally:
            self.heartbeat.close()
        rows, spans, states = self.rows, result.spans, self.states
        nodes = {n: {"offset_s": o.offset_s, "rtt_s": o.rtt_s} for n, o in sorted(self.offsets.items())}
        report = report_header(self.setup, "wall", engine="distributed") | {"epochs": rows, "nodes": nodes}
        if result.events:
            report["events"] = result.events
        model = self.executor.global_model(result.schedule, states=states) if result.schedule else None
        return ClusterResult(report, spans, states, model)

    def _costed(self, adapts: bool) -> Plan:
        """The plan with the per-unit costs a re-plan's DP weighs (the technique's `add_costs`), when
        the run adapts and --profile gives them; measuring this host's profile here would take
        minutes, so without one every unit counts the same (the cuts go to every node in `adopt`)."""
        plan, record = self.setup.plan, self.setup.technique
        if not adapts or record.add_costs is None or not self.setup.config.profile:
            return plan
        return record.add_costs(plan, setup_profiles(self.setup))

    # -- (1) join, (2) assign, (3) clocks ------------------------------------------------
    def _join(self) -> None:
        deadline = time.monotonic() + self.timeout
        while missing := [n for n in self.members if n not in self.addresses]:
            try:
                message = self.mailbox.control(max(0.0, deadline - time.monotonic()), "nodes to join")
                body = self._expect(message, "hello")
                if body["name"] != message.src or message.src not in missing:
                    raise RemoteFailure(message.src, f"said hello as {body['name']!r}; waiting for {', '.join(missing)}")
            except PhaseTimeout:
                raise PhaseTimeout(f"node(s) {', '.join(missing)} did not join within {self.timeout:g} s") from None
            except RemoteFailure as exc:
                self._drop_early(exc)
                continue
            name = message.src
            self.addresses[name] = str(body["address"])
            self._reach(name, self.addresses[name])
            self.mailbox.add_peer(name, self.addresses[name])  # first, so that an abort reaches it too
            try:
                self._check_hello(name, body)
            except RemoteFailure as exc:   # another config: dropped if the run can lose it, like any early failure
                self._drop_early(exc)
                self.transport.send_control(name, {"type": "abort", "node": name, "message": exc.reason})
                continue
            self.mailbox.watch(name)
            self.heartbeat.add(name)
            log.info("%s: %s joined from %s", self.name, name, self.addresses[name] or "in-process")

    def _check_hello(self, name: str, body: dict) -> None:
        role = self.setup.topology.node(name).role
        if body["role"] != role:
            raise ValueError(f"node {name} joined as role {body['role']}, the plan makes it a {role}")
        diffs = config_mismatch(self.setup.config, body["config"])
        if diffs:
            raise RemoteFailure(name, f"has a different config: {'; '.join(diffs)}")

    def _assign(self, members: list[str] | None = None) -> None:
        schedule = build_schedule(self.setup.plan, 0)
        peers = {n: a for n, a in {**self.addresses, self.name: self.address}.items() if n not in self.dropped}
        for member in self.members if members is None else members:
            self.transport.send_control(member, assignment(schedule, member, peers, self.setup.config.seed,
                                                           self.setup.config.epochs))

    def _sync_clocks(self, members: list[str] | None = None) -> None:
        """NTP-style pings; before the first epoch a node that fails or answers wrong is dropped if it may be."""
        samples: dict[str, list[ClockSample]] = {m: [] for m in (self.members if members is None else members)}
        for seq in range(self.pings):
            sent = {}
            for member in samples:
                sent[member] = time.time()
                self.transport.send_control(member, {"type": "ping", "seq": seq, "t0": sent[member]})
            waiting = set(samples)
            while waiting:
                try:
                    message = self.mailbox.control(self.timeout, "clock pongs")
                    body = self._expect(message, "pong")
                    if body["seq"] != seq or message.src not in waiting:
                        raise RemoteFailure(message.src, f"answered ping {seq} with pong {body['seq']}")
                    sample = _clock_sample(sent[message.src], body, message)
                except RemoteFailure as exc:
                    dropped = self._drop_early(exc)
                    samples.pop(dropped, None)
                    waiting.discard(dropped)
                    continue
                waiting.discard(message.src)
                samples[message.src].append(sample)
        for member, taken in samples.items():
            self.offsets[member] = estimate_offset(taken)

    # -- a dead node restarted: back at the next epoch boundary ----------------------------
    def _returning(self, node: str, address: str) -> None:
        """A dropped node said hello again: keep it alive with heartbeats until the epoch boundary."""
        if node in self.dropped:
            self.mailbox.add_peer(node, address, moved=True)
            self.heartbeat.add(node)

    def _rejoined(self, dead: list[str]) -> list[str]:
        """The run loop's question at an epoch boundary: the dead nodes that said hello again, admitted."""
        self.mailbox.drain()
        back = []
        for name in dead:
            message = self.mailbox.returning.pop(name, None)
            if message is None or name not in self.dropped:
                continue
            body = message.control or {}
            try:
                self._check_hello(name, body)
            except (ValueError, RemoteFailure) as exc:   # another role, or another config
                log.warning("%s: %s may not rejoin: %s", self.name, name, exc)
                self.heartbeat.remove(name)
                continue
            self.addresses[name] = str(body["address"])
            self.mailbox.rejoin(name, self.addresses[name])
            self.mailbox.watch(name)
            self.heartbeat.add(name)
            self.dropped.remove(name)
            self.members.append(name)
            self._assign([name])
            self._sync_clocks([name])
            if name not in self.members:  # it failed again while its clock was read
                continue
            log.info("%s: %s rejoined from %s", self.name, name, self.addresses[name] or "in-process")
            back.append(name)
        return back

    def _missed(self) -> list[int]:
        """The run loop's question after an epoch: the owners some aggregator left out at the round deadline."""
        return sorted(self.missed)

    def _send_state(self, node: str, replicas: list[Replica], epoch: int,
                    weights: Mapping[Replica, State], momentum: Mapping[Replica, State]) -> None:
        """protocol.py (9): `node` loads these replicas' weights and momentum before `epoch`."""
        self.transport.send_control(node, {"type": "load", "epoch": epoch,
                                           "replicas": [[r.part, r.replica] for r in replicas]})
        for replica in replicas:
            tags = load_tags(replica, epoch)
            self.transport.send(node, tags[0], dict(weights[replica]))
            self.transport.send(node, tags[1], dict(momentum.get(replica, {})))

    # -- checkpoints and resume (protocol.py (9)) ------------------------------------------
    def _resumed_dead(self) -> list[str]:
        """The nodes dead when the resumed checkpoint was written: out of the run, not waited for; one
        started again says hello and rejoins at an epoch boundary, as after any death."""
        dead = [str(n) for n in self.resume.state.get("dead", [])] if self.resume is not None else []
        for node in dead:
            if node not in self.members or not can_drop(self.setup.plan, node):
                raise ValueError(f"{self.resume.path / 'state.json'} says {node} died, "  # type: ignore[union-attr]
                                 f"which this run cannot go on without")
            self.members.remove(node)
            self.dropped.append(node)
            self.mailbox.forget(node)
        return dead

    def _load(self, checkpoint: Checkpoint, dead: list[str]) -> int:
        """Own replicas from `checkpoint`, every other node's sent to it; the first epoch to run.

        Written after nodes died, it holds the replicas of the plan without them: every node
        re-plans first (protocol.py (8)'s adopt), then loads.
        """
        check_resumable(checkpoint, self.setup)
        first = checkpoint.epoch + 1
        plan, moved = replanned(self.setup.plan, self.setup.plan, dead)
        rows = checkpoint.state["rows"]
        cuts = tuple(rows[-1].get("cuts") or plan.cuts) if rows and not dead else plan.cuts
        if cuts != plan.cuts and len(cuts) == len(plan.cuts):  # re-partitioned before it was written
            plan, self.cuts = replace(plan, cuts=cuts), cuts
        schedule = build_schedule(plan, first)
        check_replicas(checkpoint, schedule.replicas)
        if dead or self.cuts:
            carry_over(self.executor, plan, moved, (), [self.shards[n] for n in plan.owners], dead)
        self.executor.begin_segment(schedule)
        load_replicas(checkpoint, self.executor.replicas)
        restore_rng(checkpoint)
        for member in self.members:
            if dead or self.cuts:  # every replica's state follows
                self.transport.send_control(member, {"type": "adopt", "dead": dead, "owners": list(plan.owners),
                                                     "cuts": list(plan.cuts), "peers": {}, "handoff": True})
            self._send_state(member, [r for r in schedule.replicas if r.node == member], first,
                             checkpoint.replicas, checkpoint.momentum)
        self.rows, self.events = list(checkpoint.state["rows"]), resumed_events(checkpoint)
        log.info("%s: resumed from %s%s", self.name, checkpoint.path,
                 f" without {', '.join(dead)} (dead when it was written)" if dead else "")
        return first

    def _after_epoch(self, epoch: int, row: dict[str, object]) -> None:
        self.rows.append(row)
        if self._saves(epoch):
            assert self.checkpoints is not None
            state = run_state(self.setup, self.rows, self.events) | {"dead": list(self.dropped)}
            path = write_states(self.checkpoints.out, epoch, self.states, self.momenta, state, self.checkpoints.keep)
            log.info("%s: checkpoint %s", self.name, path)
        if self.progress is not None:
            self.progress(epoch, row)

    def _saves(self, epoch: int) -> bool:
        return self.checkpoints is not None and self.checkpoints.due(epoch, self.setup.config.epochs)

    # -- (4) and (5): one epoch, as an engine of the run loop ----------------------------
    def run_segment(self, plan: Plan, schedule: Schedule, segment: Segment,
                    failures: Mapping[str, float] | None = None) -> list[Span]:
        """One segment on every node; NodeFailed (for the run loop) when a node it can lose dies."""
        if failures:
            raise RuntimeError("real runs take no scripted failures: the launcher kills the node (launch --fail)")
        self.at: float | None = None
        self.runner: NodeRunner | None = None
        gone = [n for n in plan.topology.names if n in self.dropped]
        if gone:  # it died while the others rewound: the loop re-plans without it too
            raise NodeFailed(gone[0], 0.0, [])
        try:
            return self._run_segment(plan, schedule, segment)
        except (RemoteFailure, PeerLost) as exc:
            node = self._blame(plan, exc)
            if node not in self.members or not can_drop(plan, node):
                if node == exc.node:
                    raise
                raise RemoteFailure(node, str(exc)) from None
            log.warning("%s: %s; %s is redone without %s", self.name, exc, _steps(segment), node)
            self._drop(node)
            time_s = 0.0 if self.at is None else max(0.0, time.time() - self.at)
            raise NodeFailed(node, time_s, self._lost_spans(),
                             detected=exc.detected if node == exc.node else REPORTED) from None

    def _lost_spans(self) -> list[Span]:
        """This node's compute spans of the segment called off, on its clock (the loop counts the lost steps)."""
        if self.runner is None or self.at is None:
            return []
        return [replace(s, start=s.start - self.at, end=s.end - self.at) for s in self.runner.spans]

    def _blame(self, plan: Plan, failure: RemoteFailure | PeerLost) -> str:
        """The node a failure report is held against: a data owner the run can lose speaks for itself only
        (so one cannot stop the run by naming the server), other nodes for the peers the plan gives them;
        a droppable worker naming a droppable peer (FTPipeHD's neighbours) only if this node sees that
        peer gone too, else it is held against the reporter."""
        reporter = getattr(failure, "reporter", failure.node)
        if reporter in (failure.node, self.name):
            return failure.node
        sends, receives = peers_of(self.schedule, reporter)
        peer = failure.node in sends | receives
        if can_drop(plan, reporter) and reporter not in plan.owners and peer and can_drop(plan, failure.node):
            return failure.node if self._confirm(failure.node) else reporter  # two workers: which one died?
        if can_drop(plan, reporter):
            return reporter
        return failure.node if peer else reporter

    def _confirm(self, node: str) -> bool:
        """Whether this node sees `node` gone too: its stream broke, it fell silent, or it did not answer a
        liveness poll (liveness.Polls; one that answers is alive) within the silence limit."""
        def gone(seconds: float) -> bool:
            try:
                self.mailbox.poll(seconds)
            except RemoteFailure as exc:
                if exc.node != node:
                    raise
                return exc.reporter == node  # its own stream or silence, not another node's word
            return node in self.mailbox.broken
        return node in self.mailbox.broken or self.mailbox.polls.confirm(node, self.mailbox.silence_s, gone)

    def _run_segment(self, plan: Plan, schedule: Schedule, segment: Segment) -> list[Span]:
        """protocol.py (4), (5) for one segment: prepare, start at one instant, collect the reports.

        Every segment is marked as it starts (a real node may die at any moment), so a death costs
        the segment's work only. Loss and weights are collected after an epoch's last segment.
        """
        topology, epoch, last = plan.topology, segment.epoch, segment.ends_epoch
        self.schedule, self._epoch = schedule, epoch
        self.mailbox.expect(schedule)
        save = self._saves(epoch) and last
        for member in self.members:
            self.transport.send_control(member, {"type": "prepare", "epoch": epoch, "save": save,
                                                 "start": segment.start, "stop": segment.stop})
        if segment.start == 0:
            self.executor.begin_epoch(epoch, schedule)
            self.wall_s = 0.0
        else:
            self.executor.begin_segment(schedule)
        self.saved = Mark.take(self.executor)
        for message in self._reports(f"the nodes to prepare {_steps(segment)}"):
            body = self._expect(message, "ready")
            if body["epoch"] != epoch or body.get("start", 0) != segment.start:
                raise RemoteFailure(message.src, f"prepared step {body.get('start', 0)} of epoch {body['epoch']}, "
                                                 f"not {segment.start} of {epoch}")
        margin = 0.02 + 4 * max(o.rtt_s for o in self.offsets.values())
        at = self.at = time.time() + margin
        began = self.began = at if self.began is None else self.began
        anchor_speed(self.speed, began)
        for member in self.members:  # `since` on each member's clock too: a node back after a restart counts T alike
            offset = self.offsets[member]
            self.transport.send_control(member, {"type": "start", "epoch": epoch, "at": offset.to_node(at),
                                                 "since": offset.to_node(began)})
        time.sleep(max(0.0, at - time.time()))
        wall = time.perf_counter()
        self.runner = NodeRunner(self.name, schedule, self.executor, self.mailbox, topology, epoch,
                                 timeout=self.timeout, speed=self.speed, deadline=self.setup.config.round_deadline)
        own = self.runner.run()
        self.missed = set(self.runner.missed)
        spans = [replace(s, start=s.start - at, end=s.end - at) for s in own]
        if last:
            self.executor.end_epoch()
            self.loss = (self.executor.loss_sum, self.executor.loss_count)
            self.states, self.momenta = {}, {}
        for message in self._reports(f"the reports of {_steps(segment)}"):
            body, src = self._expect(message, "done"), message.src
            try:
                spans += spans_from_body(body["spans"], src, -self.offsets[src].offset_s - at)  # type: ignore[arg-type]
                replicas = [Replica(src, int(part), int(index)) for part, index in body["sent"]]  # type: ignore[union-attr]
                if last:
                    self.loss = (self.loss[0] + float(body["loss_sum"]), self.loss[1] + int(body["loss_count"]))  # type: ignore[arg-type,call-overload]
                    self.missed |= {int(i) for i in body.get("missed", [])}
            except (TypeError, ValueError, RuntimeError) as exc:
                raise RemoteFailure(src, f"sent a bad report of {_steps(segment)}: {exc}") from None
            for replica in replicas:
                data = self.mailbox.take_data(gather_tag(replica, epoch), self.timeout, f"the weights of {replica}")
                self.states[replica] = data.payload  # type: ignore[assignment]
            for part, index in body.get("moments", []):
                replica = Replica(src, int(part), int(index))
                data = self.mailbox.take_data(momentum_tag(replica, epoch), self.timeout, f"the momentum of {replica}")
                self.momenta[replica] = data.payload  # type: ignore[assignment]
        self.wall_s += time.perf_counter() - wall
        if last and (save or epoch == self.setup.config.epochs - 1):
            for replica, (module, optimizer) in self.executor.replicas.items():
                self.states[replica] = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
                self.momenta[replica] = {k: v.detach().cpu().clone() for k, v in momentum_of(module, optimizer).items()}
        return spans

    def finish_epoch(self, plan: Plan, schedule: Schedule, epoch: int) -> dict[str, object]:
        if any(a.op == AGGREGATE for _, _, a in schedule.actions()):  # the aggregator's copy (carry.py)
            self.aggregated = self.executor.global_model(schedule, states=self.states).state_dict()
        loss_sum, loss_count = self.loss
        return {"train_loss": loss_sum / max(1, loss_count),
                "test_accuracy": self.executor.evaluate(schedule, states=self.states), "wall_s": self.wall_s}

    def adopt(self, old: Plan, new: Plan, owners: Mapping[int, int]) -> list[Span] | None:
        """recovery.py (4): own replicas carried over; the others make the same re-plan from the dead list.

        A node that rejoined gets the state of its replicas: each key the average of every copy
        (as carry.py gives a new owner), without momentum. A node that takes over layers only
        dead nodes held (an MP-SL compute node's) gets them from the last aggregation's model.
        """
        own = {r: m.state_dict() for r, (m, _) in self.executor.replicas.items()}
        copies = {**own, **self.states}  # the nodes' reports came in arrival order: _averaged sorts
        replicas = build_schedule(new, 0).replicas
        lost = set(old.topology.names) - set(new.topology.names)
        if technique(new.technique).moves is not None and not set(new.topology.names) - set(old.topology.names):
            return self._hand_off(new, owners, replicas, lost)
        orphans = _orphans(old, lost, self.aggregated)
        carry_over(self.executor, new, owners, replicas, [self.shards[n] for n in new.owners], lost, self.aggregated)
        back = [n for n in new.topology.names if n in self.members and n not in old.topology.names]
        peers = {n: self.addresses[n] for n in back}
        dead = [n for n in self.dropped if n not in new.topology.names]  # one that died since: next time
        for member in self.members:
            self.transport.send_control(member, {"type": "adopt", "dead": dead, "owners": list(new.owners),
                                                 "cuts": list(new.cuts), "peers": peers})
        for node in back:
            mine = [r for r in replicas if r.node == node]
            weights = {r: _averaged(self.executor.template[r.part].state_dict(), copies) for r in mine}
            self._send_state(node, mine, self._epoch + 1, weights, {})
        for node in self.members if orphans else ():
            keys = {r: sorted(orphans & set(self.executor.template[r.part].state_dict())) for r in replicas
                    if r.node == node}
            mine = [r for r, held in keys.items() if held]
            if mine:
                self._send_state(node, mine, self._epoch, {r: {k: self.aggregated[k] for k in keys[r]} for r in mine}, {})
        return None

    def _hand_off(self, new: Plan, owners: Mapping[int, int], replicas: Sequence[Replica],
                  lost: set[str]) -> list[Span]:
        """Layers change node (FTPipeHD's DP over the survivors, or its re-partition): every new replica
        rebuilt here from the nearest surviving copy and sent to its node (runtime/handoff.py).

        Returns the transfers' spans (time 0 = the change): the state each node shares as it arrived
        here, and the state sent back."""
        began = time.time()
        for member in self.members:
            self.transport.send_control(member, {"type": "share", "epoch": self._epoch})
        states, backups = handoff.held(self.executor)
        arrived: list[Message] = []
        gathered, copies = handoff.gather(self.mailbox, self.members, self.setup.topology.names, self._epoch,
                                          self.timeout, arrived)
        everyone = set(self.setup.topology.names)  # the replicas only: their state is installed next
        carry_over(self.executor, new, owners, replicas, [self.shards[n] for n in new.owners], everyone)
        rebuilt = handoff.rebuilt(self.executor, {**states, **gathered}, {**backups, **copies}, replicas, owners, lost)
        handoff.install(self.executor, rebuilt)
        # what an epoch's end gathered is of the old parts: evaluation and a checkpoint take the new ones
        self.states = {r: weights for r, (weights, _) in rebuilt.items()}
        self.momenta = {r: momentum for r, (_, momentum) in rebuilt.items()}
        dead = [n for n in self.dropped if n not in new.topology.names]
        spans = [self._move_span(m.src, self.name, payload_nbytes(m.payload), m.received_at, began)  # type: ignore[arg-type]
                 for m in arrived]
        for member in self.members:
            self.transport.send_control(member, {"type": "adopt", "dead": dead, "owners": list(new.owners),
                                                 "cuts": list(new.cuts), "peers": {}, "handoff": True})
            mine = [r for r in replicas if r.node == member]
            sent = time.time()
            self._send_state(member, mine, self._epoch, {r: rebuilt[r][0] for r in mine}, {r: rebuilt[r][1] for r in mine})
            nbytes = sum(payload_nbytes(rebuilt[r][i]) for r in mine for i in (0, 1))
            spans.append(self._move_span(self.name, member, nbytes, None, began, sent))
        return spans

    def _move_span(self, src: str, dst: str, nbytes: int, arrival: float | None, began: float,
                   sent: float = 0.0) -> Span:
        """A hand-off's transfer on the link src -> dst: back from its arrival here, or on from its send."""
        link = self.setup.topology.links.get((src, dst))
        busy = link.transfer_s(nbytes) if link is not None else 0.0
        if arrival is not None:
            end = arrival - (link.latency_s if link is not None else 0.0)
            start = end - busy
        else:
            start = sent
            end = start + busy
        return Span(f"{src}->{dst}", LINK_CATEGORY["move"], max(0.0, start - began), max(0.0, end - began), self._epoch,
                    bytes=nbytes, label="move")

    def mark(self) -> None:
        """Nothing: every segment is marked as it starts, since a real node may die at any moment."""

    def rewind(self) -> None:
        """recovery.py (2): every survivor back to the segment's start; returns once none sends any more."""
        for member in self.members:
            self.transport.send_control(member, {"type": "rewind", "epoch": self._epoch, "dead": self.dropped})
        sends, _ = peers_of(self.schedule, self.name)
        send_fences(self.transport, sends & set(self.members), self.dropped)
        waiting = set(self.members)
        while waiting:
            try:
                message = self.mailbox.control(self.timeout, f"{', '.join(sorted(waiting))} to rewind")
            except (RemoteFailure, PeerLost) as exc:  # a second death: dropped now, re-planned by the next epoch
                if exc.node not in waiting or not can_drop(self.setup.plan, exc.node):
                    raise
                log.warning("%s: %s while the others rewind", self.name, exc)
                self._drop(exc.node)
                waiting.discard(exc.node)
                continue
            if (message.control or {}).get("type") == "rewound":  # else: a report of the aborted attempt
                waiting.discard(message.src)
        self.mailbox.clear_data()
        if self.saved is not None and self.saved.plan is self.executor.plan:
            self.saved.restore(self.executor)

    def _drop_early(self, failure: RemoteFailure) -> str:
        """Before the first epoch (or while a returning node's clock is read): drop the node a failure is
        held against if the run can lose it (the next epoch is then planned without it, as after any
        death); else fail the run."""
        node = self._blame(self.setup.plan, failure)
        if node not in self.members or not can_drop(self.setup.plan, node):
            if node == failure.node:
                raise failure
            raise RemoteFailure(node, str(failure)) from None
        log.warning("%s: %s; the run goes on without %s", self.name, failure, node)
        self._drop(node)
        return node

    def _drop(self, node: str) -> None:
        """`node` is out of the run: no more heartbeats to it, nothing it sends is read.

        It is not told (a message queued to a dead node holds the transport's close for its
        connect timeout); one that still lives gives up at its own phase timeout.
        """
        self.members.remove(node)
        self.dropped.append(node)
        self.heartbeat.remove(node)
        self.mailbox.forget(node)

    # -- helpers ---------------------------------------------------------------------------
    def _reach(self, node: str, address: str) -> None:
        """Fail at once, naming the address, when `node` joined from an address this node cannot reach."""
        if not address or self.transport.implicit_peers:
            return
        why = probe(address, min(self.timeout, CONNECT_S))
        if why is not None:
            raise RuntimeError(f"{node} advertises {address}, where {self.name} cannot reach it ({why}); start {node} "
                               f"with --advertise HOST, an address of its machine that {self.name} can reach")

    def _expect(self, message: Message, kind: str) -> dict:
        """The body of a `kind` report; another report fails its sender (RemoteFailure), not the run."""
        body = message.control or {}
        if body.get("type") != kind:
            raise RemoteFailure(message.src, f"sent '{body.get('type')}' when {self.name} expected '{kind}'")
        return body

    def _reports(self, waiting_for: str) -> Iterator[Message]:
        """One report from each member; a second from the same node before the others fails that node."""
        waiting = set(self.members)
        while waiting:
            message = self.mailbox.control(self.timeout, waiting_for)
            if message.src not in waiting:
                raise RemoteFailure(message.src, f"sent '{(message.control or {}).get('type')}' twice while "
                                                 f"{self.name} waited for {waiting_for}")
            waiting.discard(message.src)
            yield message

    def _broadcast(self, body: dict) -> None:
        """Best effort: a node that is gone cannot be told."""
        for member in self.members:
            if member in self.addresses or self.transport.implicit_peers:
                try:
                    self.transport.send_control(member, body)
                except Exception as exc:  # noqa: BLE001 - keep telling the others
                    log.debug("%s: could not send %s to %s: %s", self.name, body["type"], member, exc)


def _steps(segment: Segment) -> str:
    """How logs name a segment: the epoch, or some of its steps."""
    if segment.start == 0 and segment.ends_epoch:
        return f"epoch {segment.epoch}"
    stop = "its end" if segment.stop is None else f"step {segment.stop}"
    return f"steps {segment.start} to {stop} of epoch {segment.epoch}"


def _clock_sample(t0: float, body: dict, message: Message) -> ClockSample:
    try:
        return ClockSample(t0, float(body["t1"]), float(body["t2"]), message.received_at)
    except (TypeError, ValueError) as exc:
        raise RemoteFailure(message.src, f"sent a pong that is not a clock reading: {exc}") from None


def _averaged(keys: Mapping[str, torch.Tensor], copies: Mapping[Replica, Mapping[str, torch.Tensor]]) -> State:
    """Each key of `keys` as the plain average of the `copies` that hold it, summed by replica index
    as carry.py's pool does (float sums depend on their order; the copies' came by arrival)."""
    ordered = [copies[r] for r in sorted(copies, key=lambda r: (r.replica, r.part, r.node))]
    out = {}
    for key in keys:
        held = [{key: c[key]} for c in ordered if key in c]
        if not held:
            raise RuntimeError(f"no copy of '{key}' survives to give a rejoining node")
        out[key] = average_states(held, [1 / len(held)] * len(held))[key]
    return out


def _orphans(old: Plan, lost: set[str], aggregated: Mapping[str, torch.Tensor]) -> set[str]:
    """Keys of the units only `lost` nodes held in `old`; RuntimeError if the last aggregation lacks one."""
    if not lost:
        return set()
    units = old.part_units()
    kept = {u for r in build_schedule(old, 0).replicas if r.node not in lost for u in units[r.part]}
    orphans = {u for u in range(old.num_units) if u not in kept}
    keys = {k for k in aggregated if int(k.split(".", 1)[0]) in orphans}
    missing = sorted(orphans - {int(k.split(".", 1)[0]) for k in keys})
    if missing:
        raise RuntimeError(f"no copy of unit(s) {', '.join(map(str, missing))} survives {', '.join(sorted(lost))}: "
                           "restart with --resume from the last checkpoint")
    return keys
