"""Choose the fastest split, micro-batches or cuts for a technique, predict its epoch time, write a run config.

pipelearn (split and micro-batches, per device), sfl and sl (split): a search over the
predictor; mpsl: MP-SL's ILP for the cuts under --memory-limit, solved with HiGHS;
ftpipehd: FTPipeHD's min-max DP over stage capacity and links. Times come from
--device-profile/--server-profile, --profile, or this host measured now, scaled by the
node speeds. --out plan.toml is a config that `splitpipe run plan.toml` accepts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from splitpipe.cli.flags import add_flags, given, parse_options
from splitpipe.cli.options import add_experiment_flags, config_from_args
from splitpipe.config import RunConfig
from splitpipe.options import Counts, Names, Options, Seconds, Speeds

if TYPE_CHECKING:
    from splitpipe.planner.choose import PlanResult

__all__ = ["add_arguments", "execute", "PlanOptions"]


class PlanOptions(Options):
    memory_limit: Names | None = None
    """mpsl, ftpipehd: memory of each compute node or stage, one size or one per node, e.g. 2GB or 1GB,4GB
    (default: unlimited)"""
    compute_memory: Names | None = None
    """mpsl: memory of each compute node in --compute-speeds order, one per node, e.g. 1GB,4GB (as --memory-limit;
    nodes that differ may take any block of layers)"""
    compute_prices: Speeds | None = None
    """mpsl: price of each compute node per busy second; with --deadline the plan is the cheapest that meets it"""
    deadline: Seconds | None = None
    """mpsl: the longest epoch (closed-form estimate, seconds) the cheapest plan may take; needs --compute-prices"""
    micro_batch_choices: Counts | None = None
    """pipelearn: micro-batch counts to try (default: divisors of the batch size up to half of it)"""
    shared: bool = False
    """pipelearn, sfl: one split and micro-batch count for all devices (no per-device choice)"""
    method: str | None = None
    """pipelearn: search (over predictions, the default) or paper (the paper's published rule, shown beside
    the search's choice)"""
    estimator: str | None = None
    """mpsl: events (the event predictor, the default) or closed-form (also the paper's cost model of the chosen
    cuts, term by term)"""
    out: str | None = None
    """write the chosen configuration to this TOML file (for splitpipe run)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_flags(parser, exclude=("out", "tensorboard"))
    add_flags(parser, PlanOptions)


def execute(args: argparse.Namespace) -> int:
    from splitpipe.planner import memory_nodes, micro_batch_choices, parse_limits, plan_for
    from splitpipe.setup import prepare, setup_profiles

    options: PlanOptions = parse_options(PlanOptions, given(args, PlanOptions))
    config = config_from_args(args, exclude=("out", "tensorboard"))
    counts = options.micro_batch_choices
    setup = prepare(config)
    plan = setup.plan
    limits = None
    if options.memory_limit and options.compute_memory:
        raise ValueError("give --memory-limit or --compute-memory, not both")
    memory = options.memory_limit or options.compute_memory
    if memory:
        nodes = memory_nodes(plan)
        limits = parse_limits(",".join(memory), len(nodes), nodes)
    prices = options.compute_prices
    choices = counts or micro_batch_choices(plan.batch_size)
    sizes = {plan.batch_size} | {-(-plan.batch_size // n) for n in choices} | {plan.batch_size // n for n in choices}
    profiles = setup_profiles(setup, sorted(s for s in sizes if s >= 1))
    result = plan_for(plan, profiles, memory_limits=limits, micro_batches=counts, per_device=not options.shared,
                      cuts=config.cut_points(), method=options.method, estimator=options.estimator,
                      prices=prices, deadline_s=options.deadline)
    show(result)
    if options.out:
        write(options.out, config, result)
    return 0


def summary(result: PlanResult) -> list[str]:
    p = result.prediction
    chosen = ", ".join(f"{k} {v}" for k, v in result.settings.items())
    return [
        f"{result.technique}: {chosen}",
        f"predicted epoch time {p.time_s:.4g} s, bound {p.bound_s:.4g} s, efficiency {p.bound_s / p.time_s:.3f} "
        f"(as configured: {result.baseline_s:.4g} s)",
    ]


def show(result: PlanResult) -> None:
    from splitpipe.report import format_table

    if result.rows:
        print(format_table(result.rows, list(result.rows[0])))
    for line in result.notes + summary(result):
        print(line)


def write(path: str, config: RunConfig, result: PlanResult) -> None:
    from splitpipe.planner import plan_toml

    text = plan_toml(config, result.settings, ["written by splitpipe plan", *summary(result)])
    Path(path).write_text(text)
    print(f"wrote {path}")
