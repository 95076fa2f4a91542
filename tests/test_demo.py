"""The README's first command shows the case the project exists for: in the demo's config
(configs/demo.toml, profile timing from a committed profile) PipeLearn has the shortest
epoch of the compared techniques. Checked with the predictor, which equals the emulated
timeline in profile timing (tests/planner/test_predict.py), so no training and no clock."""

from pathlib import Path

from splitpipe.config import RunConfig
from splitpipe.engine.predict import predict_epoch
from splitpipe.options import load_toml
from splitpipe.schedules.registry import COMPARED
from splitpipe.setup import prepare, setup_profiles

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "configs" / "demo.toml"


def demo_config(**overrides: object) -> RunConfig:
    raw = load_toml(DEMO)
    raw["profile"] = str(ROOT / raw["profile"])  # the TOML names it from the repository root
    return RunConfig(**(raw | overrides))


def predicted(config: RunConfig) -> float:
    setup = prepare(config)
    return predict_epoch(setup.plan, setup_profiles(setup), config.epochs - 1).time_s


def test_demo_script_runs_the_demo_config() -> None:
    script = (ROOT / "scripts" / "demo.sh").read_text()
    assert "configs/demo.toml" in script
    config = demo_config()
    assert config.timing == "profile" and Path(config.profile or "").is_file()  # deterministic table
    assert max(config.device_speed) <= 0.1 and config.server_speed >= 20  # phones and a GPU-class server


def test_pipelearn_is_the_fastest_in_the_demo() -> None:
    times = {t: predicted(demo_config(technique=t)) for t in COMPARED}
    others = {t: s for t, s in times.items() if t != "pipelearn"}
    assert times["pipelearn"] * 1.1 < min(others.values()), times  # by a margin, not by noise


def test_fl_wins_with_fast_devices_and_a_slow_server() -> None:
    """The case the docs keep: devices at 0.1 and a server no faster than this host."""
    slow = {t: predicted(demo_config(technique=t, device_speed=(0.1,), server_speed=1.0, split=2))
            for t in ("fl", "pipelearn")}
    assert slow["fl"] < slow["pipelearn"], slow
