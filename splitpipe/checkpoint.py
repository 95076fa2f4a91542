"""Training state on disk: the trained model, and checkpoints a run resumes from exactly.

    OUT/model.safetensors                 the global model (unit-keyed), model name and cuts in its metadata
    OUT/checkpoints/epoch-0003/           after epoch 3 (written as .tmp-*, then renamed: never half there)
        replicas.safetensors              every replica's weights   NODE|PART|REPLICA|KEY
        optimizer.safetensors             every replica's SGD momentum, same keys
        state.json                        format, epoch, config, plan, RNG states, data order, report rows and events, dead nodes

Tensors go to safetensors only (nothing here is pickled); every file read is checked, and a
problem is one ValueError naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from splitpipe.engine.carry import momentum_of, set_momentum
from splitpipe.schedules.ir import Replica

if TYPE_CHECKING:
    from splitpipe.setup import Setup

__all__ = ["save_model", "load_model", "Checkpoint", "Checkpoints", "write_checkpoint", "write_states",
           "read_checkpoint", "latest_checkpoint", "restore", "load_replicas", "restore_rng", "data_order",
           "run_state", "check_resumable", "save_run_model", "MODEL_FILE"]

MODEL_FILE = "model.safetensors"
MODEL_FORMAT = "splitpipe-model/1"
CHECKPOINT_FORMAT = "splitpipe-checkpoint/1"
State = dict[str, torch.Tensor]
Replicas = Mapping[Replica, tuple[nn.Module, torch.optim.Optimizer]]


@dataclass(frozen=True)
class Checkpoints:
    """Write a checkpoint under `out` every `every` epochs (and after the last), keep the newest `keep`."""

    out: str | Path
    every: int = 1
    keep: int = 2

    def __post_init__(self) -> None:
        if self.every < 1 or self.keep < 1:
            raise ValueError(f"checkpoint-every and keep-checkpoints must be >= 1, got {self.every} and {self.keep}")

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether a checkpoint follows `epoch` of a run of `epochs`."""
        return (epoch + 1) % self.every == 0 or epoch == epochs - 1


def _tensors(state: Mapping[str, torch.Tensor]) -> State:
    """Own, contiguous CPU copies (safetensors refuses shared storages)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_model(path: str | Path, module: nn.Module, **metadata: object) -> Path:
    """Write `module`'s weights with `metadata` (model name, input shape, classes, cuts) atomically."""
    path = Path(path)
    meta = {"format": MODEL_FORMAT, **{k: json.dumps(v) for k, v in metadata.items()}}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(_tensors(module.state_dict()), str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def load_model(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """The model saved at `path`: the zoo model its metadata names, or `model` (a custom one) loaded."""
    from splitpipe.models import build_model

    path = Path(path)
    meta, state = _read_safetensors(path)
    if meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a splitpipe model (format {meta.get('format')!r}, want {MODEL_FORMAT})")
    info = {k: json.loads(v) for k, v in meta.items() if k != "format"}
    if model is None:
        try:
            model = build_model(info["model"], info["in_channels"], info["image_size"], info["num_classes"])
        except KeyError as exc:
            raise ValueError(f"{path} lacks {exc} in its metadata: pass the model to load_model") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit the model: {str(exc).splitlines()[0]}") from None
    return model


def _read_safetensors(path: Path) -> tuple[dict[str, str], State]:
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
        return meta, load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is corrupt or truncated ({str(exc).splitlines()[0]})") from None


@dataclass
class Checkpoint:
    """What a run needs to go on after `epoch`: weights, optimizer state, RNG, the report so far."""

    path: Path
    epoch: int
    replicas: dict[Replica, State]
    momentum: dict[Replica, State]
    state: dict[str, Any]


def _key(replica: Replica, name: str) -> str:
    return f"{replica.node}|{replica.part}|{replica.replica}|{name}"


def _split_keys(tensors: State, path: Path) -> dict[Replica, State]:
    out: dict[Replica, State] = {}
    for key, value in tensors.items():
        node, part, index, name = (key.split("|", 3) + ["", "", ""])[:4]
        if not (part.isdigit() and index.lstrip("-").isdigit() and name):
            raise ValueError(f"{path} has a bad key {key!r} (want NODE|PART|REPLICA|NAME)")
        out.setdefault(Replica(node, int(part), int(index)), {})[name] = value
    return out


def data_order(shards: Sequence[np.ndarray]) -> str:
    """A fingerprint of the data split: a resumed run must train on the same shards."""
    digest = hashlib.sha256()
    for shard in shards:
        digest.update(np.asarray(shard, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


def write_checkpoint(out: str | Path, epoch: int, replicas: Replicas, state: Mapping[str, Any], keep: int = 2) -> Path:
    """Write the checkpoint after `epoch` under OUT/checkpoints, keep the newest `keep`; returns its folder."""
    weights = {r: module.state_dict() for r, (module, _) in replicas.items()}
    momentum = {r: momentum_of(module, optimizer) for r, (module, optimizer) in replicas.items()}
    return write_states(out, epoch, weights, momentum, state, keep)


def write_states(out: str | Path, epoch: int, weights: Mapping[Replica, Mapping[str, torch.Tensor]],
                 momentum: Mapping[Replica, Mapping[str, torch.Tensor]], state: Mapping[str, Any],
                 keep: int = 2) -> Path:
    """write_checkpoint from every replica's weights and SGD momentum (a real run gathers them from its nodes)."""
    root = Path(out) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"epoch-{epoch:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-epoch-{epoch:04d}-", dir=root))
    try:
        flat = {_key(r, name): v for r, held in weights.items() for name, v in held.items()}
        moments = {_key(r, name): v for r, held in momentum.items() for name, v in held.items()}
        save_file(_tensors(flat), str(tmp / "replicas.safetensors"))
        save_file(_tensors(moments), str(tmp / "optimizer.safetensors"))
        rng = {"torch": torch.get_rng_state().tolist(), "numpy": _numpy_state(), "python": _python_state()}
        body = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "rng": rng, **state}
        (tmp / "state.json").write_text(json.dumps(body, default=_plain) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(p for p in root.glob("epoch-*") if p.is_dir())[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out: str | Path) -> Path:
    """The newest complete checkpoint under OUT/checkpoints; ValueError if there is none."""
    root = Path(out) / "checkpoints"
    found = sorted(p for p in root.glob("epoch-*") if (p / "state.json").is_file()) if root.is_dir() else []
    if not found:
        raise ValueError(f"no checkpoint to resume from in {root}")
    return found[-1]


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and check one checkpoint folder; one ValueError names the file and the problem."""
    path = Path(path)
    state_file = path / "state.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{state_file} is missing or not JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or not isinstance(state.get("epoch"), int):
        raise ValueError(f"{state_file} is not a splitpipe checkpoint (format {state.get('format')!r})")
    replicas = _split_keys(_read_safetensors(path / "replicas.safetensors")[1], path / "replicas.safetensors")
    momentum = _split_keys(_read_safetensors(path / "optimizer.safetensors")[1], path / "optimizer.safetensors")
    return Checkpoint(path, state["epoch"], replicas, momentum, state)


def restore(checkpoint: Checkpoint, replicas: Replicas) -> None:
    """Load weights, momentum and RNG states into a run's replicas, which must be the checkpoint's."""
    check_replicas(checkpoint, replicas)
    load_replicas(checkpoint, replicas)
    restore_rng(checkpoint)


def check_replicas(checkpoint: Checkpoint, replicas: Collection[Replica]) -> None:
    """ValueError naming the file unless the checkpoint holds exactly `replicas` (a run's plan's)."""
    if set(replicas) != set(checkpoint.replicas):
        missing = sorted(map(str, set(replicas) ^ set(checkpoint.replicas)))[:3]
        where = checkpoint.path / "replicas.safetensors"
        raise ValueError(f"{where} holds other replicas than this run's plan (e.g. {', '.join(missing)})")


def load_replicas(checkpoint: Checkpoint, replicas: Replicas) -> None:
    """Load the checkpoint's weights and momentum into `replicas` (some of the checkpoint's: one node's)."""
    where = checkpoint.path / "replicas.safetensors"
    for replica, (module, optimizer) in replicas.items():
        if replica not in checkpoint.replicas:
            raise ValueError(f"{where} lacks {replica}")
        try:
            module.load_state_dict(checkpoint.replicas[replica])
        except RuntimeError as exc:
            raise ValueError(f"{where}: {replica} does not fit: {str(exc).splitlines()[0]}") from None
        set_momentum(module, optimizer, checkpoint.momentum.get(replica, {}))


def restore_rng(checkpoint: Checkpoint) -> None:
    """This process's torch, numpy and Python random states as the checkpoint saved them."""
    rng = checkpoint.state["rng"]
    torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(_python_from(rng["python"]))


def _numpy_state() -> list[object]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    return [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(gauss)]


def _python_state() -> list[object]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _python_from(saved: Sequence[object]) -> tuple[Any, ...]:
    version, internal, gauss = saved
    return (version, tuple(internal), gauss)  # type: ignore[arg-type]


def _plain(value: object) -> object:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write {type(value).__name__} to state.json")


def save_run_model(out: str | Path, setup: Setup, model: nn.Module) -> Path:
    """OUT/model.safetensors: the global model, with what `load_model` needs to rebuild it."""
    dataset = setup.dataset
    Path(out).mkdir(parents=True, exist_ok=True)
    return save_model(Path(out) / MODEL_FILE, model, model=setup.config.model,
                      technique=setup.config.technique, in_channels=dataset.in_channels,
                      image_size=dataset.image_size, num_classes=dataset.num_classes, cuts=list(setup.plan.cuts))


def run_state(setup: Setup, rows: Sequence[Mapping[str, object]],
              events: Sequence[Mapping[str, object]] = ()) -> dict[str, object]:
    """What state.json says of the run besides the weights: its config, plan, data split, report rows and events."""
    from splitpipe.setup import report_header

    config = setup.config
    return {"config": config.to_json(), "technique": config.technique, "model": config.model,
            "dataset": config.dataset, "seed": config.seed, "epochs": config.epochs,
            "plan": report_header(setup, config.timing)["plan"], "data_order": data_order(setup.shards),
            "rows": list(rows), "events": list(events)}


def resumed_events(checkpoint: Checkpoint) -> list[dict[str, object]]:
    """The events of the run `checkpoint` was written by, then this run's `resume` (its dead named)."""
    earlier = [dict(e) for e in checkpoint.state.get("events", [])]
    return [*earlier, {"epoch": checkpoint.epoch + 1, "step": 0, "time_s": 0.0, "event": "resume",
                       "nodes": [str(n) for n in checkpoint.state.get("dead", [])], "checkpoint": checkpoint.path.name}]


def check_resumable(checkpoint: Checkpoint, setup: Setup) -> None:
    """One line naming the checkpoint and the first thing that differs from this run."""
    want = run_state(setup, [])
    where = checkpoint.path / "state.json"
    for key in ("technique", "model", "dataset", "seed", "data_order"):
        if checkpoint.state.get(key) != want[key]:
            raise ValueError(f"{where} is of another run: {key} {checkpoint.state.get(key)!r}, this run's {want[key]!r}")
    if checkpoint.epoch + 1 >= setup.config.epochs:
        raise ValueError(f"{where} is after epoch {checkpoint.epoch}: nothing left of {setup.config.epochs} epochs")
