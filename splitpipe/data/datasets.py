"""load_dataset: one string names a dataset, from the embedded digits to an .npz file."""

from __future__ import annotations

from dataclasses import replace

from splitpipe.data.dataset import Dataset
from splitpipe.data.digits import load_digits
from splitpipe.data.npz import load_npz
from splitpipe.data.synthetic import SYNTHETIC_OPTIONS, load_synthetic
from splitpipe.data.vision import VISION_DATASETS, load_vision

__all__ = ["DATASET_NAMES", "load_dataset"]

#: Names load_dataset knows; "npz:PATH" loads a file besides.
DATASET_NAMES = ("digits", "synthetic", "cifar10", "mnist", "fashion-mnist", "svhn")

#: Keyword options each dataset accepts.
OPTIONS: dict[str, tuple[str, ...]] = {
    "digits": ("augment",),
    "synthetic": (*SYNTHETIC_OPTIONS, "augment"),
    **{name: ("download", "augment") for name in VISION_DATASETS},
    "npz:PATH": (),
}


def load_dataset(spec: str, *, seed: int = 0, root: str | None = None, **options: object) -> Dataset:
    """Load the dataset `spec` names ("digits", "cifar10", "npz:data/x.npz", ...).

    `seed` fixes the train/test split (digits, npz without test arrays) or the
    data itself (synthetic); `root` is where torchvision datasets live
    (default $SPLITPIPE_DATA or ~/.cache/splitpipe); `options` are per dataset,
    e.g. image_size=64 for synthetic or download=True for cifar10. Options may also be
    written into the spec, as on the command line: "synthetic:image_size=16,train_size=400".
    augment=true|false turns the papers' crop and flip on or off (data/augment.py; default on
    for the torchvision datasets, off for the rest).
    """
    if ":" in spec and not spec.startswith("npz:"):
        spec, inline = spec.split(":", 1)
        options = {**parse_options(spec, inline), **options}
    name = "npz:PATH" if spec.startswith("npz:") else spec
    if name not in OPTIONS:
        raise ValueError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASET_NAMES)}, npz:PATH")
    unknown = sorted(set(options) - set(OPTIONS[name]))
    if unknown:
        accepted = ", ".join(OPTIONS[name]) or "none"
        raise ValueError(f"dataset {spec!r} has no option {', '.join(unknown)} (options: {accepted})")
    augment = options.pop("augment", name in VISION_DATASETS)
    if type(augment) is not bool:
        raise ValueError(f"dataset option augment must be true or false (got {augment!r})")
    return replace(_load(spec, name, seed, root, options), augment=augment)


def _load(spec: str, name: str, seed: int, root: str | None, options: dict[str, object]) -> Dataset:
    if name == "npz:PATH":
        path = spec[len("npz:") :]
        if not path:
            raise ValueError("dataset 'npz:' needs a path, as in npz:data/train.npz")
        return load_npz(path, seed=seed)
    if name == "digits":
        return load_digits(seed=seed)
    if name == "synthetic":
        return load_synthetic(seed=seed, **options)  # type: ignore[arg-type]
    return load_vision(name, root=root, **options)  # type: ignore[arg-type]


def parse_options(name: str, text: str) -> dict[str, object]:
    """"a=1,b=true" -> {"a": 1, "b": True}; values are ints, floats, booleans or strings."""
    options: dict[str, object] = {}
    for pair in filter(None, text.split(",")):
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"dataset option {pair!r} of {name!r} must be KEY=VALUE, as in {name}:image_size=16")
        value: object = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    pass
        options[key.strip()] = value
    return options
