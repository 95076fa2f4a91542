"""Who is who, the config check, span encoding and the launcher's TOML."""

from pathlib import Path

import pytest

from splitpipe.config import RunConfig, load_toml
from splitpipe.network import PROFILES
from splitpipe.plan import stage_topology, star_topology
from splitpipe.runtime.launcher import config_toml
from splitpipe.runtime.protocol import (
    config_body,
    config_mismatch,
    node_id,
    node_name,
    parse_address,
    spans_from_body,
    spans_to_body,
)
from splitpipe.span import Span


def test_node_names_follow_role_and_id() -> None:
    star = star_topology(3, [PROFILES["4g"]], [1.0], 1.0)
    assert node_name(star, "server", 0) == "server"
    assert node_name(star, "device", 2) == "device2"
    stages = stage_topology([1.0, 1.0, 1.0], [PROFILES["lan"]])
    assert node_name(stages, "worker", 2) == "worker2"
    assert node_id("worker2", "worker") == 2 and node_id("central", "central") == 0


@pytest.mark.parametrize(("role", "index", "message"), [
    ("device", 3, r"--id 3 out of range: the plan's device nodes have ids 0, 1, 2"),
    ("compute", 0, r"--id 0 out of range: the plan's compute nodes have none of that role"),
    ("gpu", 0, r"unknown role 'gpu'; roles are: server, device"),
])
def test_bad_role_or_id_is_named(role: str, index: int, message: str) -> None:
    star = star_topology(3, [PROFILES["4g"]], [1.0], 1.0)
    with pytest.raises(ValueError, match=message):
        node_name(star, role, index)


def test_config_mismatch_names_keys_but_ignores_local_ones() -> None:
    mine = RunConfig(devices=2, out="here", tensorboard="tb")
    theirs = config_body(RunConfig(devices=3, lr=0.5, out="there", progress=False))
    assert config_mismatch(mine, theirs) == ["devices: 2 != 3", "lr: 0.01 != 0.5"]
    assert config_mismatch(mine, config_body(mine.with_(out=None))) == []


def test_spans_round_trip_and_shift() -> None:
    spans = [Span("device0", "forward", 10.0, 10.5, 1, 0, 0, 3, 1, 0, "F0.1"),
             Span("device0->server", "upload", 10.5, 11.0, 1, 0, 0, 3, 1, 4096, "a0.1")]
    back = spans_from_body(spans_to_body(spans), "device0", shift=-10.0)
    assert [(s.start, s.end) for s in back] == [(0.0, 0.5), (0.5, 1.0)]
    assert [s.label for s in back] == ["F0.1", "a0.1"] and back[1].bytes == 4096


def test_a_malformed_span_names_the_node() -> None:
    with pytest.raises(RuntimeError, match="node device1 sent a span"):
        spans_from_body([["device1", "forward", 0.0]], "device1")


def test_addresses_are_checked() -> None:
    assert parse_address("127.0.0.1:0", "--listen") == ("127.0.0.1", 0)
    with pytest.raises(ValueError, match="--coordinator 'server' must be HOST:PORT"):
        parse_address("server", "--coordinator")


def test_launcher_toml_reads_back_as_the_same_config(tmp_path: Path) -> None:
    config = RunConfig(technique="mpsl", devices=3, network='10/25/30', cuts="1,2,3", lr=0.05,
                       server_speed=2.5, progress=False, out="x", tensorboard="tb")
    path = tmp_path / "run.toml"
    path.write_text(config_toml(config))
    back = RunConfig(**load_toml(path))
    assert back == config.with_(progress=True, out=None, tensorboard=None)  # the coordinator's own flags
