"""PipeLearn's published parameter rule: its choice equals a hand computation on a toy profile,
and `plan --method paper` sets it beside the search's choice."""

import pytest

from splitpipe.engine.predict import node_profiles
from splitpipe.network import LinkSpec, NetworkProfile
from splitpipe.plan import Plan, star_topology
from splitpipe.planner import plan_for
from splitpipe.planner.pipelearn import paper_rule
from splitpipe.profile import Profile, UnitCost

NET = NetworkProfile("toy", LinkSpec(100.0, 0.5), LinkSpec(200.0, 0.5))  # the rule ignores latency


def toy() -> tuple[Plan, Profile]:
    """3 units at batch 8: forward 0.4, 0.2, 0.6 s, backward twice that; outputs 20, 2, 1 bytes per sample.
    Two devices at speed 1, the server at speed 2."""
    units = tuple(UnitCost({8: f}, {8: 2 * f}, 0.0, out, 64) for f, out in ((0.4, 20), (0.2, 2), (0.6, 1)))
    profile = Profile("toy", "cpu", 3, units)
    plan = Plan(technique="pipelearn", topology=star_topology(2, [NET] * 2, [1.0, 1.0], 2.0), num_units=3,
                cuts=(1,), batch_size=8, micro_batches=1, shard_sizes=(16, 16), owners=("device0", "device1"))
    return plan, profile


def test_rule_equals_the_hand_computation() -> None:
    """Split 1: Fc .4, Bc .8, Fs .4, Bs .8, U 160 B / 100 = 1.6, D .8: N = ceil(3.6 / .4) + 1 = 10, capped at B/2 = 4.
    Per micro-batch: forward .1, up .4, server .3, down .2, backward .2; uploads end .5 .9 1.3 1.7, server
    .8 1.2 1.6 2.0, downloads 1.0 1.4 1.8 2.2, backwards 1.2 1.6 2.0 2.4: path 2.4.
    Split 2: Fc .6, Bc 1.2, Fs .3, Bs .6, U 16 B / 100 = .16, D .08: N = ceil(1.14 / .6) + 1 = 3, lowered to a
    divisor of 8: 2. Per micro-batch: forward .3, up .08, server .45, down .04, backward .6; forwards end .3 .6,
    uploads .38 .68, server .83 1.28, downloads .87 1.32, backwards 1.47 2.07: path 2.07, the shorter."""
    plan, profile = toy()
    split, n, path = paper_rule(profile, profile, plan, "device0")
    assert (split, n) == (2, 2)
    assert path == pytest.approx(2.07)


def test_method_paper_plans_the_rule_and_shows_the_search() -> None:
    plan, profile = toy()
    profiles = node_profiles(plan.topology, profile)
    result = plan_for(plan, profiles, method="paper")
    assert result.settings == {"split": 2, "micro_batches": 2}
    assert result.plan.cuts == (2,) and result.plan.micro_batches == 2
    assert [row["paper_path_s"] for row in result.rows] == pytest.approx([2.07, 2.07])
    assert any(note.startswith("search's choice: split") for note in result.notes)
    search = plan_for(plan, profiles)
    assert search.prediction.time_s <= result.prediction.time_s * (1 + 1e-9)


@pytest.mark.parametrize(("technique", "flag", "value"), [("sfl", "method", "paper"),
                                                          ("pipelearn", "estimator", "closed-form")])
def test_method_and_estimator_only_where_the_hook_offers_them(technique: str, flag: str, value: str) -> None:
    plan, profile = toy()
    from dataclasses import replace
    with pytest.raises(ValueError, match=f"^{flag} '{value}' is not offered for {technique}"):
        plan_for(replace(plan, technique=technique), node_profiles(plan.topology, profile), **{flag: value})
