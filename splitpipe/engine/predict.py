"""The predictor: the event engine on profile durations, with no tensors.

The same schedule the emulator trains with is run on the virtual clock by an executor that
only says how long each compute action takes (ProfileTiming, as the emulator's profile
timing does) and how many bytes each message has (from the profile's output and parameter
sizes). So with profile timing and the same profiles the prediction *is* the emulated
timeline, and the planner can search over it thousands of times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from splitpipe.engine.events import run_schedule
from splitpipe.engine.timing import ProfileTiming
from splitpipe.loop import run_loop
from splitpipe.plan import Plan, Topology
from splitpipe.profile import LABEL_BYTES, Profile
from splitpipe.schedules import Segment
from splitpipe.schedules.ir import Action, Schedule
from splitpipe.span import Span

__all__ = ["Prediction", "ProfileExecutor", "PredictorEngine", "node_profiles", "predict_epoch", "profile_timing"]


def node_profiles(
    topology: Topology,
    default: Profile | None = None,
    *,
    device: Profile | None = None,
    server: Profile | None = None,
) -> dict[str, Profile]:
    """The profile of every node: `device` for data owners (role "device"), `server` for
    every other node (server, compute nodes, aggregator, FTPipeHD stages), else `default`.

    Node speeds still apply on top: a node's time is its profile's time / its speed, so
    with a profile measured on the machine itself leave that node's speed at 1.
    """
    out = {}
    for node in topology.nodes:
        chosen = (device if node.role == "device" else server) or default
        if chosen is None:
            raise ValueError(f"no profile for node '{node.name}' (role {node.role}): give a default profile")
        out[node.name] = chosen
    return out


def profile_timing(plan: Plan, profiles: Mapping[str, Profile]) -> ProfileTiming:
    """ProfileTiming for `plan`: node speeds from its topology, one unit range per part id."""
    speeds = {n.name: n.speed for n in plan.topology.nodes}
    return ProfileTiming(dict(profiles), speeds, plan.part_units())


class ProfileExecutor:
    """Executor protocol without tensors: durations from a ProfileTiming, bytes from a profile.

    Message sizes match what the tensor executor sends: an activation of part p is the
    output of its last unit, a gradient of part p is the size of its input, labels are
    int64, weights and averages are the part's parameters and buffers.
    """

    def __init__(self, timing: ProfileTiming, sizes: Profile, part_units: Sequence[range]) -> None:
        self.timing = timing
        self.sizes = sizes
        self.part_units = part_units
        self._durations: dict[tuple[str, str, int, int, int], float] = {}

    def compute(self, node: str, action: Action) -> float:
        key = (node, action.op, action.part, action.samples, len(action.reads))
        seconds = self._durations.get(key)
        if seconds is None:
            seconds = self._durations[key] = self.timing.duration(node, action)
        return seconds

    def send(self, node: str, action: Action) -> tuple[object, int]:
        return None, self.message_bytes(action)

    def receive(self, node: str, action: Action, payload: object) -> None:
        return None

    def message_bytes(self, action: Action) -> int:
        tag = action.tag
        assert tag is not None
        if tag.kind == "label":
            return LABEL_BYTES * action.samples
        units = self.part_units[tag.part]
        if tag.kind == "act":
            return self.sizes.boundary_bytes(units.stop) * action.samples
        if tag.kind == "grad":
            return self.sizes.boundary_bytes(units.start) * action.samples
        return self.sizes.param_bytes(units)


@dataclass
class Prediction:
    """One predicted epoch: its spans and the same metrics the emulator reports."""

    spans: list[Span]
    metrics: dict[str, object]

    @property
    def time_s(self) -> float:
        return float(self.metrics["time_s"])  # type: ignore[arg-type]

    @property
    def bound_s(self) -> float:
        return float(self.metrics["bound_s"])  # type: ignore[arg-type]

    @property
    def idle_s(self) -> dict[str, float]:
        return dict(self.metrics["idle_s"])  # type: ignore[call-overload]


def predict_epoch(plan: Plan, profiles: Profile | Mapping[str, Profile], epoch: int = 0) -> Prediction:
    """Predict epoch `epoch` of `plan` (epochs differ only in whether FedAvg runs).

    `profiles` is one profile for every node or one per node (see node_profiles).
    """
    if isinstance(profiles, Profile):
        profiles = node_profiles(plan.topology, profiles)
    sizes = next(iter(profiles.values()))
    if len(sizes.units) != plan.num_units:
        raise ValueError(f"profile of {sizes.model} has {len(sizes.units)} units but the plan has {plan.num_units}")
    result = run_loop(plan, PredictorEngine(profiles, sizes), range(epoch, epoch + 1))
    return Prediction(result.spans, result.rows[0])


class PredictorEngine:
    """The predictor as an engine of the run loop: profile durations and sizes, no tensors."""

    def __init__(self, profiles: Mapping[str, Profile], sizes: Profile) -> None:
        self.profiles, self.sizes = profiles, sizes

    def run_segment(self, plan: Plan, schedule: Schedule, segment: Segment,
                    failures: Mapping[str, float] | None = None) -> list[Span]:
        executor = ProfileExecutor(profile_timing(plan, self.profiles), self.sizes, plan.part_units())
        return run_schedule(schedule, plan.topology, executor, segment.epoch, failures=failures)

    def mark(self) -> None:
        """Nothing to remember: the predictor holds no weights."""

    def rewind(self) -> None:
        """Nothing to restore."""

    def finish_epoch(self, plan: Plan, schedule: Schedule, epoch: int) -> dict[str, object]:
        return {}

    def adopt(self, old: Plan, new: Plan, owners: Mapping[int, int]) -> None:
        """Nothing to carry: the predictor holds no weights."""
