"""FTPipeHD's static pipeline: a central node with the data and part 0, then a chain of
workers, one part each, trained by synchronous 1F1B with one optimizer step per mini-batch.

Stage s of S runs, per mini-batch of N micro-batches, min(N, S - s) warm-up forwards, then
alternates one backward and one forward, then finishes the backwards (S = 3, N = 4)::

    central  (s=0): F0 F1 F2 B0 F3 B1 B2 B3 | U      (1) warm-up, (2) 1F1B, (3) cool-down
    worker1  (s=1): F0 F1 B0 F2 B1 F3 B2 B3 | U
    worker2  (s=2): F0 B0 F1 B1 F2 B2 F3 B3 | U

(4) central's forward writes the labels of each micro-batch and the last worker's forward
reads them, so add_messages sends them straight there (see `stage_topology` for the link). Gradients
accumulate over the micro-batches and every stage steps once, so without BatchNorm the
weights equal single-process training of the whole model with the same accumulation.

(5) Replication (`replicate.py`): after the step of every `replicate_every`-th iteration each
stage snapshots its part and sends it to the next stage (the last to central), and after every
`replicate_central_every`-th each worker sends it to central: recovery copies for re-planning
when a worker dies (`ftpipehd_replan.py`).

`pipeline = "async"` (the paper's code, PipeDream's 1F1B): the same order over whole mini-batches
instead of micro-batches, each backward followed by its stage's step, so stage s has at most
S - s mini-batches in flight and never waits for a flush (S = 3, 4 mini-batches)::

    central  (s=0): F0 F1 F2 B0 U0 F3 B1 U1 B2 U2 B3 U3
    worker1  (s=1): F0 F1 B0 U0 F2 B1 U1 F3 B2 U2 B3 U3
    worker2  (s=2): F0 B0 U0 F1 B1 U1 F2 B2 U2 F3 B3 U3

(6) A forward's weights are stashed for its backward (ir.STASH_WEIGHTS), whose gradient applies
to the weights of that time. A segment boundary (a re-partition check) drains the pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from splitpipe.models.split import check_cuts, even_cuts
from splitpipe.network import parse_network
from splitpipe.plan import Plan, stage_topology
from splitpipe.schedules.ftpipehd_repartition import Repartitioner, moves
from splitpipe.schedules.ftpipehd_replan import add_costs, replan
from splitpipe.schedules.ir import (
    AGG_LANE,
    BACKWARD,
    FORWARD,
    STASH_WEIGHTS,
    STEP,
    Action,
    Replica,
    Schedule,
    Tag,
    programs_from_lists,
)
from splitpipe.schedules.messages import add_messages
from splitpipe.schedules.record import PlannerHook, Segment, Technique
from splitpipe.schedules.replicate import REPLICATE_CENTRAL_EVERY, REPLICATE_EVERY, add_replication
from splitpipe.schedules.steps import owner_steps
from splitpipe.schedules.validate import validate

if TYPE_CHECKING:
    from splitpipe.config import RunConfig

__all__ = ["build_ftpipehd", "check_stages", "one_f_one_b", "TECHNIQUE"]

#: Stages when neither the cuts nor several stage speeds are given.
DEFAULT_STAGES = 4
#: Plan.extra key: "sync" (1F1B over micro-batches, one step per mini-batch) or "async".
PIPELINE = "pipeline"


def one_f_one_b(stages: int, stage: int, micro_batches: int) -> list[tuple[str, int]]:
    """Stage `stage`'s order of forwards and backwards in one mini-batch: [("F", 0), ...]."""
    warmup = min(micro_batches, stages - stage)
    order = [(FORWARD, mb) for mb in range(warmup)]  # (1)
    for mb in range(micro_batches - warmup):  # (2)
        order += [(BACKWARD, mb), (FORWARD, warmup + mb)]
    order += [(BACKWARD, mb) for mb in range(micro_batches - warmup, micro_batches)]  # (3)
    return order


def check_stages(plan: Plan) -> None:
    stages = 1 + len(plan.chain)
    if stages < 2:
        raise ValueError(f"ftpipehd needs at least 2 stages (central and a worker), got {stages}")
    if plan.parts != stages:
        raise ValueError(f"ftpipehd with {stages} stages needs {stages - 1} cuts, got {len(plan.cuts)}")
    if len(plan.owners) != 1:
        raise ValueError(f"ftpipehd has one data owner (the central node), got {len(plan.owners)}")


def build_ftpipehd(plan: Plan, segment: Segment) -> Schedule:
    check_stages(plan)
    nodes = [plan.owners[0], *plan.chain]
    lists: dict[tuple[str, int], list[Action]] = {(node, 0): [] for node in nodes}
    if plan.extra.get(PIPELINE) == "async":
        _build_async(plan, segment, nodes, lists)
    for step, sizes in ([] if plan.extra.get(PIPELINE) == "async" else owner_steps(plan, 0, None, segment)):
        for s, node in enumerate(nodes):
            own = lists[(node, 0)]
            for op, mb in one_f_one_b(len(nodes), s, len(sizes)):
                make = _forward if op == FORWARD else _backward
                own.append(make(s, len(nodes) - 1, step, mb, sizes[mb]))
            own.append(Action(STEP, part=s, step=step))
        add_replication(plan, segment.epoch, step, nodes, lists)  # (5)
    replicas = tuple(Replica(node, s, 0) for s, node in enumerate(nodes))
    return validate(Schedule(
        programs=add_messages(programs_from_lists(lists), plan.topology.links),
        replicas=replicas,
        evaluate={r.part: ((r, 1.0),) for r in replicas},
        owners={0: nodes[0]},
    ))


def _build_async(plan: Plan, segment: Segment, nodes: list[str], lists: dict[tuple[str, int], list[Action]]) -> None:
    """PipeDream's 1F1B over the segment's mini-batches, a step after each backward."""
    steps = list(owner_steps(plan, 0, 1, segment))
    copies: dict[int, dict[tuple[str, int], list[Action]]] = {}
    for step, _ in steps:
        copies[step] = {(node, 0): [] for node in nodes}
        add_replication(plan, segment.epoch, step, nodes, copies[step])  # (5)
    for s, node in enumerate(nodes):
        own = lists[(node, 0)]
        for op, i in one_f_one_b(len(nodes), s, len(steps)):
            step, (n,) = steps[i]
            if op == FORWARD:
                own.append(_forward(s, len(nodes) - 1, step, 0, n))
                continue
            own += [_backward(s, len(nodes) - 1, step, 0, n), Action(STEP, part=s, step=step)]
            own += copies[step][(node, 0)]
    for step, _ in steps:
        for (node, lane), actions in copies[step].items():
            if lane == AGG_LANE:
                lists.setdefault((node, lane), []).extend(actions)


def _forward(s: int, last: int, step: int, mb: int, n: int) -> Action:
    reads: tuple[Tag, ...] = (Tag("data", 0, 0, step, mb),) if s == 0 else (Tag("act", 0, s - 1, step, mb),)
    writes: tuple[Tag, ...] = (Tag("act", 0, s, step, mb),)
    if s == 0:  # (4)
        writes += (Tag("label", 0, 0, step, mb),)
    if s == last:  # (4)
        reads += (Tag("label", 0, 0, step, mb),)
        writes = (Tag("loss", 0, s, step, mb),)
    return Action(FORWARD, part=s, step=step, mb=mb, samples=n, reads=reads, writes=writes)


def _backward(s: int, last: int, step: int, mb: int, n: int) -> Action:
    reads = (Tag("grad", 0, s + 1, step, mb),) if s < last else ()
    writes = (Tag("grad", 0, s, step, mb),) if s > 0 else ()
    return Action(BACKWARD, part=s, step=step, mb=mb, samples=n, reads=reads, writes=writes)


def make_plan(config: RunConfig, labels: np.ndarray, num_units: int) -> tuple[list[np.ndarray], Plan]:
    """`central` (the data, stage 0) then worker1..workerS-1, one network per hop."""
    given = config.cut_points()
    speeds = config.stage_speed_list()
    stages = config.stages
    if stages is None:
        stages = len(given) + 1 if given is not None else len(speeds) if len(speeds) > 1 else DEFAULT_STAGES
    if len(speeds) not in (1, stages):
        raise ValueError(f"stage-speeds has {len(speeds)} values for {stages} stages: give one, or one per stage")
    if given is not None and len(given) != stages - 1:
        raise ValueError(f"ftpipehd with {stages} stages needs {stages - 1} cuts, got {len(given)}")
    cuts = even_cuts(num_units, stages) if given is None else check_cuts(num_units, given)
    topology = stage_topology(speeds * stages if len(speeds) == 1 else speeds,
                              [parse_network(n) for n in config.networks()])
    shards = [np.arange(len(labels))]
    plan = Plan(
        technique="ftpipehd", topology=topology, num_units=num_units, cuts=cuts,
        batch_size=config.batch_size, micro_batches=config.micro_batches,
        shard_sizes=(len(shards[0]),), owners=("central",), server="central",
        chain=tuple(f"worker{s}" for s in range(1, stages)),
        extra={REPLICATE_EVERY: config.replicate_every, REPLICATE_CENTRAL_EVERY: config.replicate_central_every,
               PIPELINE: config.pipeline, **({STASH_WEIGHTS: True} if config.pipeline == "async" else {})},
    )
    check_stages(plan)
    return shards, plan


def adapt(plan: Plan, config: RunConfig) -> tuple[Repartitioner, int] | None:
    """The central node's re-partition every `repartition_every` iterations (ftpipehd_repartition.py)."""
    every = config.repartition_every
    return None if every == 0 else (Repartitioner(plan, every, config.epochs), every)


TECHNIQUE = Technique(
    name="ftpipehd",
    summary="a central node with the data, then a chain of heterogeneous workers, one part each, 1F1B",
    build=build_ftpipehd,
    make_plan=make_plan,
    check=check_stages,
    roles=("central", "worker"),
    accelerated_roles=frozenset({"central"}),
    pipelined=True,
    planner=PlannerHook("stages-dp", memory_roles=("central", "worker")),
    replan=replan,
    droppable_roles=frozenset({"worker"}),
    add_costs=add_costs,
    moves=moves,
    adapt=adapt,
)
