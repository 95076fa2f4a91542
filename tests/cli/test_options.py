"""Options declared once: lists read from TOML arrays and comma strings alike, bad types are one line
naming the key, and the help does not import torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from splitpipe.cli import build_parser, main
from splitpipe.cli.compare import CompareOptions
from splitpipe.cli.flags import flags_of
from splitpipe.cli.options import config_from_args
from splitpipe.cli.plan import PlanOptions
from splitpipe.cli.profile import ProfileOptions
from splitpipe.config import RunConfig, load_toml
from splitpipe.planner import plan_toml
from splitpipe.runtime.options import ClusterOptions, NodeOptions

#: list option -> (TOML array, the same as a comma string, the typed tuple)
RUN_LISTS = {
    "network": ('["4g", "wifi"]', "4g,wifi", ("4g", "wifi")),
    "device_speed": ("[0.1, 0.5]", "0.1,0.5", (0.1, 0.5)),
    "device_splits": ("[1, 3]", "1,3", (1, 3)),
    "device_micro_batches": ("[2, 4]", "2,4", (2, 4)),
    "cuts": ("[2, 10]", "2,10", (2, 10)),
    "stage_speeds": ("[1, 0.5]", "1,0.5", (1.0, 0.5)),
    "compute_speeds": ("[1, 0.5]", "1,0.5", (1.0, 0.5)),
    "fail": ('["device0@1", "device1@2.5"]', "device0@1,device1@2.5", ("device0@1", "device1@2.5")),
    "rejoin": ('["device0@3"]', "device0@3", ("device0@3",)),
    "speed_change": ('["worker1@3=0.1", "worker2@5=2"]', "worker1@3=0.1,worker2@5=2", ("worker1@3=0.1", "worker2@5=2")),
}
#: a command's own list options -> (command and required flags, flag value, the typed tuple)
COMMAND_LISTS = {
    (PlanOptions, "memory_limit"): (["plan"], "1GB,4GB", ("1GB", "4GB")),
    (PlanOptions, "micro_batch_choices"): (["plan"], "2,4", (2, 4)),
    (PlanOptions, "compute_memory"): (["plan"], "1GB,4GB", ("1GB", "4GB")),
    (PlanOptions, "compute_prices"): (["plan"], "1,2.5", (1.0, 2.5)),
    (ProfileOptions, "batch_sizes"): (["profile", "--out", "p.json"], "8,16", (8, 16)),
    (CompareOptions, "techniques"): (["compare"], "fl,sfl", ("fl", "sfl")),
}


def run_args(argv: list[str]) -> RunConfig:
    return config_from_args(build_parser().parse_args(["run", *argv]))


def test_every_list_option_has_a_case_here() -> None:
    assert {s.name for s in flags_of(RunConfig) if s.is_list} == set(RUN_LISTS)
    commands = {(o, s.name) for o in (PlanOptions, ProfileOptions, CompareOptions, NodeOptions, ClusterOptions)
                for s in flags_of(o) if s.is_list}
    assert commands == set(COMMAND_LISTS)


@pytest.mark.parametrize("name", RUN_LISTS)
def test_run_list_options_read_toml_arrays_and_comma_strings_alike(name: str, tmp_path: Path) -> None:
    array, comma, typed = RUN_LISTS[name]
    base = 'devices = 2\n'
    for i, text in enumerate((array, f'"{comma}"')):
        path = tmp_path / f"run{i}.toml"
        path.write_text(f"{base}{name} = {text}\n")
        assert getattr(RunConfig(**load_toml(path)), name) == typed
        assert getattr(run_args([str(path)]), name) == typed
    assert getattr(run_args(["--devices", "2", f"--{name.replace('_', '-')}", comma]), name) == typed


@pytest.mark.parametrize(("key", "name"), COMMAND_LISTS)
def test_command_list_options_read_comma_strings(key: type, name: str, tmp_path: Path) -> None:
    command, comma, typed = COMMAND_LISTS[(key, name)]
    args = build_parser().parse_args([*command, f"--{name.replace('_', '-')}", comma])
    assert getattr(key(**{n: getattr(args, n) for n in key.option_names() if hasattr(args, n)}), name) == typed
    assert getattr(key(**{**({"out": "p"} if key is ProfileOptions else {}), name: list(typed)}), name) == typed


def test_a_single_value_is_a_list_of_one() -> None:
    assert RunConfig(device_speed=0.5, cuts=3, network="wifi").device_speed == (0.5,)
    assert RunConfig(device_speed=0.5, cuts=3, network="wifi").cut_points() == (3,)
    assert RunConfig(devices=3, device_splits=(2,)).device_split_list() == (2, 2, 2)


BAD_TOML = [
    ("epochs = true", "epochs must be an integer, got true"),
    ("devices = 2.5", "devices must be an integer, got 2.5"),
    ("devices = 12345678901234567890", "devices must be <= "),
    ('network = [1, "4g"]', "network[0] must be a string, got 1"),
    ("device_speed = [0.1, true]", "device_speed[1] must be a number, got true"),
    ('cuts = "2,x"', "cuts must be a comma list of integers, got '2,x'"),
    ("[model]\nname = 'vgg5'", "model must be a string, got a table"),
    ("lr = inf", "lr must be a finite number, got inf"),
    ('timing = "fast"', "timing must be one of 'measured' or 'profile', got 'fast'"),
    ("micro_batchez = 2", "micro_batchez"),
    ("epochs = ", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_TOML)
def test_bad_toml_values_are_one_line_naming_the_key(text: str, message: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text + "\n")
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("splitpipe run: error: "), err
    assert message in err
    if "valid TOML" not in message and "micro_batchez" not in message:
        assert f"error: {path}: " in err  # the key is named as the file's


BAD_FLAGS = [
    (["run", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["run", "--lr", "inf"], "--lr must be a finite number, got inf"),
    (["run", "--lr", "0"], "--lr must be > 0"),
    (["run", "--device-speed", "0.1,x"], "--device-speed must be a comma list of numbers"),
    (["run", "--epochs", "2.5"], "--epochs: invalid int value: '2.5'"),
    (["launch", "--timeout", "0"], "--timeout must be > 0"),
    (["launch", "--threads", "0"], "--threads must be >= 1"),
    (["node", "--role", "server", "--config", "CONFIG", "--timeout", "-1"], "--timeout must be > 0"),
    (["node", "--role", "server", "--config", "CONFIG", "--tls-cert", "a.pem"], "needs all of --tls-cert"),
    (["node", "--role", "dragon", "--config", "CONFIG"], "--role: invalid choice: 'dragon'"),
    (["profile", "--out", "p.json", "--repeats", "0"], "--repeats must be >= 1"),
    (["plan", "--micro-batch-choices", "0,2"], "--micro-batch-choices[0] must be >= 1"),
    (["compare", "--techniques", ""], "--techniques needs at least 1 value"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS)
def test_bad_flags_are_one_line_naming_the_flag(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    config = tmp_path / "run.toml"
    config.write_text("devices = 2\n")
    argv = [str(config) if a == "CONFIG" else a for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert message in err


def test_a_node_hands_over_its_options_as_json_and_reads_them_back() -> None:
    options = NodeOptions(role="device", id=1, threads=2, config=RunConfig(cuts=(1, 2), device_speed=(0.1, 0.5)))
    assert NodeOptions.from_json(options.model_dump_json()) == options
    with pytest.raises(ValueError) as info:
        NodeOptions.from_json('{"role": "server", "timeout": 0, "config": {"lr": true}}')
    assert str(info.value) == "timeout must be > 0.0, got 0; config.lr must be a number, got true"


def test_a_bad_options_file_is_one_line_from_the_node_entry(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    path.write_text('{"role": "server", "config": {"epochs": true}}')
    done = subprocess.run([sys.executable, "-m", "splitpipe.runtime.entry", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "splitpipe node: error: config.epochs must be an integer, got true"


def test_plan_toml_writes_lists_as_arrays_that_load_back(tmp_path: Path) -> None:
    config = RunConfig(devices=3, network=("4g", "wifi", "4g+"), device_speed=(0.1, 0.5, 1))
    text = plan_toml(config, {"split": 2, "device_splits": "1,2,3"}, ["chosen"])
    assert text.startswith("# chosen\n")
    assert "device_splits = [1, 2, 3]" in text and 'network = ["4g", "wifi", "4g+"]' in text
    path = tmp_path / "plan.toml"
    path.write_text(text)
    assert RunConfig(**load_toml(path)) == config.with_(split=2, device_splits=(1, 2, 3))


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["node", "--help"], ["plan", "--help"]])
def test_help_does_not_import_torch(argv: list[str]) -> None:
    code = ("import sys\nfrom splitpipe.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_the_launcher_does_not_import_the_cli() -> None:
    code = "import sys, splitpipe.runtime.launcher\nprint(any(m.startswith('splitpipe.cli') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_launcher_pipes_each_nodes_options_never_a_file() -> None:
    from splitpipe.runtime.handover import Handover

    options = NodeOptions(role="device", config=RunConfig())
    piped = Handover.from_bytes(Handover((options,), (b"key",), {}).to_bytes())
    assert piped.nodes == (options,) and piped.nodes[0].role == "device"
