"""Tiny plans of every technique for the schedule tests (golden files, validation); mpsl and
ftpipehd are the tiny_plan() of test_mpsl and test_ftpipehd."""

import pytest

from splitpipe.network import PROFILES
from splitpipe.plan import Plan, chain_topology, stage_topology, star_topology
from splitpipe.schedules.star import scaled_star


def star(technique: str, devices: int = 1, shard: int = 3, micro_batches: int = 2, cuts=(1,)) -> Plan:
    """fl, sl, sfl or pipelearn on `devices` devices around one server, 2 units."""
    topology = star_topology(devices, [PROFILES["wifi"]], [0.1], 1.0)
    return Plan(technique, topology, num_units=2, cuts=cuts if technique != "fl" else (), batch_size=3,
                micro_batches=micro_batches, shard_sizes=(shard,) * devices,
                owners=tuple(f"device{i}" for i in range(devices)))


def sfl_servers(devices: int = 3, servers: int = 2) -> Plan:
    """sfl with `devices` owners split among `servers` servers (MP-SL's horizontally scaled baseline)."""
    plan = star("sfl", devices=devices, micro_batches=1)
    topology = scaled_star(plan.topology, servers, [PROFILES["wifi"]])
    return Plan("sfl", topology, num_units=2, cuts=(1,), batch_size=3, micro_batches=1,
                shard_sizes=plan.shard_sizes, owners=plan.owners)


def mpsl(owners: int = 2, compute: int = 1, shard_sizes: tuple[int, ...] = (2, 2), batch: int = 2,
         micro_batches: int = 1) -> Plan:
    topology = chain_topology(owners, [PROFILES["4g"]], [1.0], compute, 1.0, PROFILES["dc"])
    return Plan("mpsl", topology, num_units=compute + 2, cuts=tuple(range(1, compute + 2)), batch_size=batch,
                micro_batches=micro_batches, shard_sizes=shard_sizes,
                owners=tuple(f"device{i}" for i in range(owners)), server="aggregator", labels="owner",
                chain=tuple(f"compute{j}" for j in range(compute)))


def ftpipehd(stages: int = 3, samples: int = 4, batch: int = 4, micro_batches: int = 2) -> Plan:
    return Plan("ftpipehd", stage_topology([1.0] * stages, [PROFILES["wifi"]]), num_units=stages,
                cuts=tuple(range(1, stages)), batch_size=batch, micro_batches=micro_batches,
                shard_sizes=(samples,), owners=("central",), server="central",
                chain=tuple(f"worker{s}" for s in range(1, stages)))


#: technique -> (golden file, its plan)
TINY = {
    "fl": ("fl_2dev.txt", lambda: star("fl", devices=2)),
    "sl": ("sl_2dev.txt", lambda: star("sl", devices=2)),
    "sfl": ("sfl_2dev.txt", lambda: star("sfl", devices=2)),
    "pipelearn": ("pipelearn_2dev.txt", lambda: star("pipelearn", devices=2)),
    "sfl2": ("sfl2_2dev.txt", lambda: star("sfl2", devices=2)),
    "sfl-servers": ("sfl_3dev_2servers.txt", lambda: sfl_servers()),
    "mpsl": ("mpsl_2owners_1compute.txt", lambda: mpsl()),
    "ftpipehd": ("ftpipehd_3stages_2mb.txt", lambda: ftpipehd()),
}


@pytest.fixture(params=sorted(TINY))
def tiny(request: pytest.FixtureRequest) -> tuple[str, str, Plan]:
    """(technique, golden file name, plan) for each technique."""
    name, make = TINY[request.param]
    return request.param, name, make()
