"""Tests of load_dataset: digits, synthetic, npz files, torchvision wrappers and their errors."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from splitpipe.data import DATASET_NAMES, Dataset, load_dataset


def assert_normalised(data: Dataset) -> None:
    assert data.x_train.dtype == torch.float32
    assert data.y_train.dtype == torch.int64
    assert data.y_test.dtype == torch.int64
    mean = data.x_train.mean(dim=(0, 2, 3))
    std = data.x_train.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-4)


def test_digits_shapes() -> None:
    data = load_dataset("digits")
    assert data.name == "digits"
    assert data.x_train.shape == (1437, 1, 8, 8)
    assert data.x_test.shape == (360, 1, 8, 8)
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 8)
    assert_normalised(data)


def test_digits_split_is_stratified() -> None:
    counts = load_dataset("digits").y_test.bincount()
    assert len(counts) == 10
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of about 180 per class


def test_digits_is_deterministic_per_seed() -> None:
    first, again, other = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    assert torch.equal(first.x_train, again.x_train)
    assert torch.equal(first.y_test, again.y_test)
    assert not torch.equal(first.y_train, other.y_train)


def test_synthetic_defaults() -> None:
    data = load_dataset("synthetic")
    assert data.x_train.shape == (2000, 3, 32, 32)
    assert data.x_test.shape == (500, 3, 32, 32)
    assert data.num_classes == 10
    assert data.y_train.bincount().tolist() == [200] * 10
    assert_normalised(data)


def test_synthetic_options() -> None:
    data = load_dataset("synthetic", channels=2, image_size=16, classes=4, train_size=40, test_size=12)
    assert data.x_train.shape == (40, 2, 16, 16)
    assert data.x_test.shape == (12, 2, 16, 16)
    assert (data.num_classes, data.in_channels, data.image_size) == (4, 2, 16)


def test_synthetic_is_seeded() -> None:
    first, again, other = (load_dataset("synthetic", seed=s, train_size=50) for s in (3, 3, 4))
    assert torch.equal(first.x_train, again.x_train)
    assert not torch.equal(first.x_train, other.x_train)


def test_synthetic_labels_are_learnable() -> None:
    data = load_dataset("synthetic", image_size=8)
    means = torch.stack([data.x_train[data.y_train == c].mean(0) for c in range(10)])
    distances = torch.cdist(data.x_test.flatten(1), means.flatten(1))
    accuracy = (distances.argmin(1) == data.y_test).float().mean()
    assert accuracy > 0.5  # chance is 0.1


def test_synthetic_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match=r"image_size=0"):
        load_dataset("synthetic", image_size=0)


def test_unknown_option_is_named() -> None:
    with pytest.raises(ValueError, match=r"dataset 'digits' has no option colour \(options: augment\)"):
        load_dataset("digits", colour=True)
    with pytest.raises(ValueError, match=r"no option size \(options: channels, image_size"):
        load_dataset("synthetic", size=3)


def test_unknown_dataset_message() -> None:
    with pytest.raises(ValueError) as info:
        load_dataset("foo")
    assert str(info.value) == (
        "unknown dataset 'foo'; choose one of: "
        "digits, synthetic, cifar10, mnist, fashion-mnist, svhn, npz:PATH"
    )
    assert DATASET_NAMES == (
        "digits",
        "synthetic",
        "cifar10",
        "mnist",
        "fashion-mnist",
        "svhn",
    )


# npz files


def save(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)  # type: ignore[arg-type]  # the stub fears allow_pickle in arrays
    return f"npz:{path}"


def test_npz_nhwc_uint8_with_test_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(30, 6, 6, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(7, 6, 6, 3), dtype=np.uint8)
    y, y_test = np.arange(30) % 3, np.arange(7) % 3
    spec = save(tmp_path / "d.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    data = load_dataset(spec)
    assert data.name == spec
    assert data.x_train.shape == (30, 3, 6, 6)
    assert data.x_test.shape == (7, 3, 6, 6)
    assert data.num_classes == 3
    assert data.y_train.tolist() == y.tolist()
    assert_normalised(data)
    # Round trip: undo the normalisation with the train statistics of x / 255.
    pixels = x.transpose(0, 3, 1, 2).astype(np.float64) / 255
    mean, std = pixels.mean(axis=(0, 2, 3)), pixels.std(axis=(0, 2, 3))
    expected = (x_test.transpose(0, 3, 1, 2) / 255 - mean[:, None, None]) / std[:, None, None]
    assert np.allclose(data.x_test.numpy(), expected, atol=1e-5)


def test_npz_nchw_float_without_test_arrays(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(50, 1, 5, 5)).astype(np.float32)
    y = np.arange(50) % 5
    spec = save(tmp_path / "d.npz", x=x, y=y)
    data = load_dataset(spec, seed=2)
    assert data.x_train.shape == (40, 1, 5, 5)
    assert data.x_test.shape == (10, 1, 5, 5)
    assert data.y_test.bincount().tolist() == [2] * 5
    assert torch.equal(data.x_test, load_dataset(spec, seed=2).x_test)
    assert not torch.equal(data.y_test, load_dataset(spec, seed=3).y_test)


def test_npz_split_keeps_each_sample_once_with_its_label(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.float64)[:, None, None, None] * np.ones((1, 1, 3, 3))
    spec = save(tmp_path / "d.npz", x=x, y=np.arange(40) % 4)
    data = load_dataset(spec)
    values = torch.cat([data.x_train, data.x_test])[:, 0, 0, 0]
    labels = torch.cat([data.y_train, data.y_test])
    sample = values.argsort().argsort()  # normalising is increasing, so ranks recover x
    assert sorted(sample.tolist()) == list(range(40))
    assert (sample % 4).tolist() == labels.tolist()


def test_npz_single_channel_nhw(tmp_path: Path) -> None:
    spec = save(tmp_path / "d.npz", x=np.zeros((10, 4, 4)), y=np.zeros(10, dtype=np.int64))
    data = load_dataset(spec)
    assert data.x_train.shape == (8, 1, 4, 4)
    assert data.num_classes == 1


def test_npz_missing_file_message(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    with pytest.raises(ValueError) as info:
        load_dataset(f"npz:{path}")
    assert str(info.value) == f"npz file not found: {path}"


def test_npz_missing_array_names_keys(tmp_path: Path) -> None:
    spec = save(tmp_path / "d.npz", x=np.zeros((4, 2, 2)), labels=np.zeros(4))
    with pytest.raises(ValueError, match=r"no array 'y' \(arrays present: labels, x\)"):
        load_dataset(spec)
    spec = save(
        tmp_path / "e.npz",
        x=np.zeros((4, 2, 2)),
        y=np.zeros(4),
        x_test=np.zeros((2, 2, 2)),
    )
    with pytest.raises(ValueError, match=r"no array 'y_test'"):
        load_dataset(spec)


def test_npz_non_square_images_name_shape(tmp_path: Path) -> None:
    spec = save(tmp_path / "d.npz", x=np.zeros((4, 3, 8, 6)), y=np.zeros(4))
    with pytest.raises(ValueError, match=r"x has shape \(4, 3, 8, 6\)"):
        load_dataset(spec)


def test_npz_label_count_must_match(tmp_path: Path) -> None:
    spec = save(tmp_path / "d.npz", x=np.zeros((4, 2, 2)), y=np.zeros(3))
    with pytest.raises(ValueError, match=r"x has 4 images, y has shape \(3,\)"):
        load_dataset(spec)


def test_npz_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "t.npz").write_text("not numpy")
    with pytest.raises(ValueError, match="cannot read npz file"):
        load_dataset(f"npz:{tmp_path / 't.npz'}")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        load_dataset(f"npz:{tmp_path / 'a.npy'}")


# torchvision datasets, with torchvision absent or faked


def test_torchvision_missing_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes the import fail
    monkeypatch.delitem(sys.modules, "torchvision.datasets", raising=False)
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10")
    assert str(info.value) == "dataset 'cifar10' needs torchvision: pip install 'splitpipe[vision]'"


class FakeCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10: NHWC uint8 data, list targets."""

    calls: ClassVar[list[dict[str, object]]] = []

    def __init__(self, root: str, download: bool = False, train: bool = True) -> None:
        FakeCIFAR10.calls.append({"root": root, "download": download, "train": train})
        if not download:
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
        n = 20 if train else 10
        self.data = np.random.default_rng(n).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % 10 for i in range(n)]


@pytest.fixture
def fake_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = types.ModuleType("torchvision.datasets")
    datasets.CIFAR10 = FakeCIFAR10  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    FakeCIFAR10.calls.clear()


@pytest.mark.usefixtures("fake_torchvision")
def test_torchvision_files_missing_names_root_and_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPLITPIPE_DATA", str(tmp_path))
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10")
    message = str(info.value)
    assert f"dataset 'cifar10' not found under {tmp_path}" in message
    assert "download=True" in message
    assert FakeCIFAR10.calls == [{"root": str(tmp_path), "download": False, "train": True}]


@pytest.mark.usefixtures("fake_torchvision")
def test_torchvision_dataset_is_converted(tmp_path: Path) -> None:
    data = load_dataset("cifar10", root=str(tmp_path), download=True)
    assert data.x_train.shape == (20, 3, 32, 32)
    assert data.x_test.shape == (10, 3, 32, 32)
    assert data.num_classes == 10
    assert_normalised(data)
    assert [c["train"] for c in FakeCIFAR10.calls] == [True, False]
    assert data.augment, "the papers augment their vision datasets"
    assert not load_dataset("cifar10:augment=false", root=str(tmp_path), download=True).augment


def test_dataset_lists_every_problem() -> None:
    with pytest.raises(ValueError, match=r"x_train must be float32 .*; y_train must be int64"):
        Dataset(
            "bad",
            torch.zeros(4, 1, 2, 3),
            torch.zeros(3),
            torch.zeros(1, 1, 2, 2),
            torch.zeros(1, dtype=torch.int64),
            2,
        )


def test_options_can_be_written_into_the_spec() -> None:
    data = load_dataset("synthetic:image_size=16,train_size=40,test_size=10,classes=3")
    assert data.x_train.shape == (40, 3, 16, 16) and data.num_classes == 3 and len(data.y_test) == 10


def test_bad_option_in_the_spec_is_named() -> None:
    with pytest.raises(ValueError, match="image_sz"):
        load_dataset("synthetic:image_sz=16")


def test_npz_truncated_or_corrupt_is_one_error(tmp_path: Path) -> None:
    spec = save(tmp_path / "d.npz", x=np.zeros((40, 4, 4)), y=np.arange(40) % 4)
    whole = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="cannot read npz file .*truncated or not an npz"):
        load_dataset(spec)


def test_class_count_is_bounded_and_borne_out_by_the_labels(tmp_path: Path) -> None:
    labels = np.arange(40) % 4
    with pytest.raises(ValueError, match="3000001 classes; the limit is 100000"):
        load_dataset(save(tmp_path / "a.npz", x=np.zeros((40, 4, 4)), y=labels * 10**6))
    with pytest.raises(ValueError, match="label 3000 but only 4 distinct labels: renumber them 0..3"):
        load_dataset(save(tmp_path / "b.npz", x=np.zeros((40, 4, 4)), y=labels * 1000))
    assert load_dataset(save(tmp_path / "c.npz", x=np.zeros((40, 4, 4)), y=labels * 3)).num_classes == 10
