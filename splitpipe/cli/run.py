"""Train one technique on the emulator and report where the time went; resume a stopped run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from splitpipe.cli.flags import add_flags, given, parse_options
from splitpipe.cli.options import add_experiment_flags, config_from_args
from splitpipe.config import RunConfig
from splitpipe.options import Options

if TYPE_CHECKING:
    from splitpipe.checkpoint import Checkpoint

__all__ = ["add_arguments", "execute", "RunOptions"]


class RunOptions(Options):
    resume: str | None = None
    """continue the run whose out folder this is from its last complete checkpoint (its config; --epochs may
    raise the total)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_flags(parser)
    add_flags(parser, RunOptions)


def execute(args: argparse.Namespace) -> int:
    from splitpipe.checkpoint import latest_checkpoint, read_checkpoint, save_run_model
    from splitpipe.experiment import Checkpoints, emulate, prepare
    from splitpipe.report.console import epoch_progress, show_run

    options: RunOptions = parse_options(RunOptions, given(args, RunOptions))
    checkpoint = None
    if options.resume:
        checkpoint = read_checkpoint(latest_checkpoint(options.resume))
        config = resumed_config(options.resume, args, checkpoint)
    else:
        config = config_from_args(args)
    if config.out:
        writable_folder(config.out)
    setup = prepare(config)
    every = 1 if config.checkpoint_every is None else config.checkpoint_every
    checkpoints = Checkpoints(config.out, every, config.keep_checkpoints) if config.out and every else None
    with epoch_progress(config, config.technique) as progress:
        result = emulate(setup, progress, checkpoints=checkpoints, resume=checkpoint)
    show_run(result.report, result.spans, config.out, f"emulated, {result.report['timing']} timing")
    if config.out and result.model is not None:
        print(f"wrote {save_run_model(config.out, setup, result.model)}")
    return 0


def resumed_config(out: str, args: argparse.Namespace, checkpoint: Checkpoint | None = None) -> RunConfig:
    """The config of the run whose out folder is `out` (its last checkpoint's), with --epochs and
    --progress as given now."""
    from splitpipe.checkpoint import latest_checkpoint, read_checkpoint

    checkpoint = checkpoint or read_checkpoint(latest_checkpoint(out))
    config = RunConfig.from_json(json.dumps(checkpoint.state["config"]))
    return config.with_(out=out, **{k: v for k, v in given(args, RunConfig).items() if k in ("epochs", "progress")})


def writable_folder(out: str) -> None:
    """Fail before training, not after it, when `out` cannot hold the run's files."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".splitpipe-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"--out {out} cannot hold the run's files: {exc.strerror or exc}") from None
