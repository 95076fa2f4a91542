"""MP-SL's closed-form epoch time: every term equals a hand computation on a small toy, and it
stays close to the event predictor when the pipeline is compute-bound."""

import pytest

from splitpipe.engine.predict import node_profiles, predict_epoch
from splitpipe.network import LinkSpec, NetworkProfile
from splitpipe.plan import Plan, chain_topology
from splitpipe.planner.mpsl_cost import closed_form_epoch
from splitpipe.profile import Profile, UnitCost

OWNER_NET = NetworkProfile("toy", LinkSpec(100.0, 0.01), LinkSpec(200.0, 0.02))
CHAIN_NET = NetworkProfile("toy-chain", LinkSpec(1000.0, 0.001), LinkSpec(1000.0, 0.001))


def toy_profile() -> Profile:
    """5 units at batch 4: unit u forwards in 0.1 (u + 1) s, backwards in twice that, steps in 0.01 (u + 1) s,
    outputs 10 (u + 1) bytes per sample and holds 100 (u + 1) bytes of parameters."""
    units = tuple(UnitCost({4: 0.1 * (u + 1)}, {4: 0.2 * (u + 1)}, 0.01 * (u + 1), 10 * (u + 1), 100 * (u + 1))
                  for u in range(5))
    return Profile("toy", "cpu", 5, units, copy_s_per_byte=1e-3)


def toy_plan(chain_speed: float = 1.0, owner_net: NetworkProfile = OWNER_NET) -> Plan:
    """Owners device0 (speed 1, 8 samples) and device1 (speed 0.5, 12 samples); compute0..2 hold units 1, 2, 3."""
    topology = chain_topology(2, [owner_net] * 2, [1.0, 0.5], 3, chain_speed, CHAIN_NET)
    return Plan(technique="mpsl", topology=topology, num_units=5, cuts=(1, 2, 3, 4),
                batch_size=4, micro_batches=1, shard_sizes=(8, 12), owners=("device0", "device1"),
                server="aggregator", labels="owner", chain=("compute0", "compute1", "compute2"))


def test_closed_form_equals_the_hand_computation() -> None:
    plan = toy_plan()
    got = closed_form_epoch(plan, node_profiles(plan.topology, toy_profile()))
    # start: forward of unit 0 (0.1 s at speed 1, 0.2 s at 0.5) + 0.01 s + 40 B / 100 B/s
    assert got.start_s == pytest.approx(((0.1 + 0.41) + (0.2 + 0.41)) / 2)
    # end: 0.02 s + 40 B / 200 B/s + backward and step of unit 0 (0.21 s, 0.42 s)
    assert got.end_s == pytest.approx(((0.22 + 0.21) + (0.22 + 0.42)) / 2)
    # full: slowest forward (compute2, 0.4) + slowest backward + step (compute2, 0.8 + 0.04)
    assert got.full_s == pytest.approx(0.4 + 0.84)
    stages = (0.2 + 0.42) + (0.3 + 0.63) + (0.4 + 0.84)
    links = 2 * (0.001 + 80 / 1000) + 2 * (0.001 + 120 / 1000)
    tails = ((0.82 + 0.5 + 1.05 + 1.61) + (0.82 + 1.0 + 2.1 + 1.61)) / 2  # down 160 B, unit 4 fwd + bwd + step, up
    assert got.empty_s == pytest.approx(stages + links + tails) and got.tail_s == pytest.approx(tails)
    # aggregation: upload 600 B of units 0 and 4, the slowest averaging (aggregator: 600 B x 2 owners x 1 ms/B;
    # compute2: 400 x 2 x 1 ms = 0.8 s), download 600 B
    assert got.aggregation_s == pytest.approx((0.01 + 6.0) + 1.2 + (0.02 + 3.0))
    assert got.batches == 2 + 3
    assert got.time_s == pytest.approx(0.56 + 7.949 + 4 * 1.24 + 0.535 + 10.23)
    assert "(5 - 1) x full 1.24" in got.formula()


def test_closed_form_tracks_the_events_once_owners_fill_the_pipeline() -> None:
    """With 2 owners the 6 stages are mostly empty and the model is 19-36% short; with 8 it is within 10%."""
    fast = NetworkProfile("fast", LinkSpec(1e9, 0.0), LinkSpec(1e9, 0.0))
    topology = chain_topology(8, [fast] * 8, [1.0] * 8, 3, 1.0, CHAIN_NET)
    plan = Plan(technique="mpsl", topology=topology, num_units=5, cuts=(1, 2, 3, 4), batch_size=4,
                micro_batches=1, shard_sizes=(16,) * 8, owners=tuple(f"device{i}" for i in range(8)),
                server="aggregator", labels="owner", chain=("compute0", "compute1", "compute2"))
    profiles = node_profiles(plan.topology, toy_profile())
    closed, events = closed_form_epoch(plan, profiles).time_s, predict_epoch(plan, profiles).time_s
    assert closed == pytest.approx(events, rel=0.1)


def test_closed_form_charges_a_calibrated_profile_per_action_as_the_predictor_does() -> None:
    """A calibration (planner/calibrate.py) adds its cost to every action of its kind and place, in
    the closed form as in engine/timing.py: both estimates then read the same unit costs."""
    from dataclasses import replace

    from splitpipe.engine.predict import profile_timing
    from splitpipe.schedules import build_schedule

    plan = toy_plan()
    bare = node_profiles(plan.topology, toy_profile())
    calibrated = {n: replace(p, calibration={"F": (0.05, 0.0), "B:middle": (0.0, 1.0), "U": (0.01, 0.0)})
                  for n, p in bare.items()}
    before, after = closed_form_epoch(plan, bare), closed_form_epoch(plan, calibrated)
    assert after.start_s == pytest.approx(before.start_s + (0.05 / 1.0 + 0.05 / 0.5) / 2)  # one forward of part 0
    # full: compute2's forward + 0.05 s, its backward doubled (a middle part), its step + 0.01 s
    assert after.full_s == pytest.approx((0.4 + 0.05) + (2 * 0.8 + 0.04 + 0.01))
    timing = profile_timing(plan, calibrated)
    compute2 = [a for node, _, a in build_schedule(plan, 0).actions() if node == "compute2"]
    charged = {a.op: timing.duration("compute2", a) for a in compute2 if a.op in ("F", "B", "U")}
    assert after.full_s == pytest.approx(charged["F"] + charged["B"] + charged["U"])
