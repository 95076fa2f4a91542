"""Tests of the model zoo, unit shapes and cutting models into parts."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from splitpipe.models import MODEL_NAMES, build_model, check_cuts, split_model
from splitpipe.models.zoo import unit_output_shapes

#: Units per zoo model; planners and papers' comparisons depend on these counts.
UNIT_COUNTS = {
    "vgg5": 5,
    "resnet18": 10,
    "mobilenet_v3_small": 15,
    "vgg19": 25,  # MP-SL's count
    "resnet101": 37,  # MP-SL's count
}

#: (channels, side) of 8x8 digits, CIFAR and MNIST.
SHAPES = [(1, 8), (3, 32), (1, 28)]
SLOW = {"vgg19", "resnet101"}
BUILD_CASES = [
    (name, channels, side)
    for name in MODEL_NAMES
    for channels, side in SHAPES
    if name not in SLOW or side != 28
]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_model_names_are_the_registry() -> None:
    assert MODEL_NAMES == (
        "vgg5",
        "resnet18",
        "mobilenet_v3_small",
        "vgg19",
        "resnet101",
    )


@pytest.mark.parametrize(("name", "channels", "side"), BUILD_CASES)
def test_model_builds_and_forwards_to_class_scores(
    name: str, channels: int, side: int
) -> None:
    model = build_model(name, channels, side, 10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, side, side))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_unit_count_and_num_classes(name: str) -> None:
    model = build_model(name, 1, 8, 7)
    assert isinstance(model, nn.Sequential)
    assert len(model) == UNIT_COUNTS[name]
    assert unit_output_shapes(model, 1, 8)[-1] == (7,)


@pytest.mark.parametrize("training", [True, False])
def test_unit_output_shapes_only_reads_the_model(training: bool) -> None:
    """The nodes of one launched process share one model and size their messages at once
    (runtime/bounds.py): its modules never run and its flags never change, so another node's
    call cannot run it in train mode and move BatchNorm's running statistics."""
    model = build_model("vgg5", 1, 8, 10).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ran: list[nn.Module] = []
    for module in model.modules():  # a copy keeps the hook: only the model's own modules count
        module.register_forward_pre_hook(lambda m, _: ran.append(m))
    assert unit_output_shapes(model, 1, 8)[-1] == (10,)
    assert ran and not {id(m) for m in ran} & {id(m) for m in model.modules()}
    assert {m.training for m in model.modules()} == {training}
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_training_forward_and_backward_reach_every_parameter() -> None:
    model = build_model("mobilenet_v3_small", 3, 32, 10).train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def _layers(unit: nn.Module, kind: type[nn.Module] = nn.Module) -> list[nn.Module]:
    """The leaf layers of `unit` (itself when it is a leaf) that are `kind`."""
    leaves = [m for m in unit.modules() if not list(m.children())]
    return [m for m in leaves if isinstance(m, kind)]


def _shape(layer: nn.Module) -> tuple[int, ...]:
    """(in, out) of a Linear; (in, out, kernel, padding) of a Conv2d."""
    if isinstance(layer, nn.Linear):
        return (layer.in_features, layer.out_features)
    assert isinstance(layer, nn.Conv2d)
    return (layer.in_channels, layer.out_channels, *layer.kernel_size, *layer.padding)


def test_vgg5_units_follow_pipelearn() -> None:
    model = build_model("vgg5", 3, 32, 10)
    conv_bn_relu = [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert [[type(m) for m in _layers(unit)] for unit in model] == [
        [*conv_bn_relu, nn.MaxPool2d],
        [*conv_bn_relu, nn.MaxPool2d],
        conv_bn_relu,
        [nn.Flatten, nn.Linear],
        [nn.Linear],
    ]
    convs = [_shape(m) for m in _layers(model, nn.Conv2d)]
    assert convs == [(3, 32, 3, 3, 1, 1), (32, 64, 3, 3, 1, 1), (64, 64, 3, 3, 1, 1)]
    linears = [_shape(m) for m in _layers(model, nn.Linear)]
    assert linears == [(8 * 8 * 64, 128), (128, 10)]


def test_vgg5_floors_a_side_not_divisible_by_four() -> None:
    model = build_model("vgg5", 1, 30, 10)
    assert _shape(_layers(model, nn.Linear)[0]) == (7 * 7 * 64, 128)
    assert model(torch.randn(2, 1, 30, 30)).shape == (2, 10)


def test_unit_output_shapes_of_vgg5_on_cifar() -> None:
    model = build_model("vgg5", 3, 32, 10)
    assert unit_output_shapes(model, 3, 32) == [
        (32, 16, 16),
        (64, 8, 8),
        (64, 8, 8),
        (128,),
        (10,),
    ]


def test_unit_output_shapes_leaves_modes_and_statistics_alone() -> None:
    model = build_model("vgg5", 3, 32, 10).train()
    units = list(model)
    first, last = units[0], units[-1]
    last.eval()
    (norm,) = _layers(first, nn.BatchNorm2d)
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    unit_output_shapes(model, 3, 32)
    assert model.training and first.training and not last.training
    assert all(torch.equal(norm.state_dict()[k], v) for k, v in before.items())


def test_vgg19_skips_pools_that_would_empty_small_images() -> None:
    model = build_model("vgg19", 1, 8, 10)
    shapes = unit_output_shapes(model, 1, 8)
    assert shapes[:6] == [(64, 8, 8), (64, 8, 8), (64, 4, 4), (128, 4, 4), (128, 4, 4), (128, 2, 2)]
    assert [type(model[u]).__name__ for u in (2, 5, 10, 15, 20)] == ["MaxPool2d"] * 3 + ["Identity"] * 2
    assert shapes[20] == (512, 1, 1)
    assert shapes[21:] == [(512,), (512,), (512,), (10,)]


#: Parameters of VGG-19 (BN, 512-wide classifier) and ResNet-101 on CIFAR, as before the
#: re-layering into MP-SL's layers: the regrouping adds and drops none.
PARAMS = {"vgg19": 20_565_834, "resnet101": 42_512_970}


@pytest.mark.parametrize("name", ["vgg19", "resnet101"])
def test_paper_layers_keep_the_architecture(name: str) -> None:
    assert _params(build_model(name, 3, 32, 10)) == PARAMS[name]


def test_vgg19_regrouped_into_its_old_19_units_gives_the_same_output() -> None:
    """The 25 layers grouped back as before (each pool folded into the conv unit before it,
    the flatten into the first linear) compute exactly what the layers compute."""
    model = build_model("vgg19", 3, 32, 10).eval()
    groups: list[list[nn.Module]] = []
    for unit in model:
        if groups and (isinstance(unit, nn.MaxPool2d | nn.Identity) or isinstance(groups[-1][-1], nn.Flatten)):
            groups[-1].append(unit)
        else:
            groups.append([unit])
    old = nn.Sequential(*(nn.Sequential(*g) for g in groups))
    assert len(old) == 19
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(old(x), model(x))


def test_resnet101_units_are_the_papers_layers() -> None:
    model = build_model("resnet101", 3, 32, 10)
    kinds = [type(unit).__name__ for unit in model]
    assert kinds[:2] == ["Sequential", "Identity"]
    assert kinds[2:35] == ["Bottleneck"] * 33
    assert kinds[35:] == ["Sequential", "Linear"]


@pytest.mark.parametrize(("side", "last_side"), [(8, 2), (32, 4), (28, 4)])
def test_mobilenet_keeps_a_feature_map_on_small_images(
    side: int, last_side: int
) -> None:
    shapes = unit_output_shapes(build_model("mobilenet_v3_small", 1, side, 10), 1, side)
    assert shapes[12] == (576, last_side, last_side)
    assert shapes[13:] == [(1024,), (10,)]


@pytest.mark.parametrize(
    ("name", "cuts"),
    [
        ("vgg5", (1, 3)),
        ("vgg5", (1, 2, 3, 4)),
        ("resnet18", (2, 5, 9)),
        ("mobilenet_v3_small", (1, 7, 14)),
    ],
)
def test_split_parts_chained_equal_the_whole(name: str, cuts: tuple[int, ...]) -> None:
    model = build_model(name, 3, 32, 10).eval()
    parts = split_model(model, cuts)
    assert len(parts) == len(cuts) + 1
    assert [len(part) for part in parts] == [
        stop - start for start, stop in zip((0, *cuts), (*cuts, len(model)))
    ]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        whole = model(x)
        chained = x
        for part in parts:
            chained = part(chained)
    assert torch.allclose(chained, whole, atol=1e-6)


def test_split_parameters_sum_to_the_whole_and_are_shared() -> None:
    model = build_model("resnet18", 3, 32, 10)
    parts = split_model(model, [3, 6])
    assert sum(_params(part) for part in parts) == _params(model)
    shared = {id(p) for part in parts for p in part.parameters()}
    assert shared == {id(p) for p in model.parameters()}


def test_split_keeps_unit_names_and_no_cuts_is_one_part() -> None:
    model = build_model("vgg5", 1, 8, 10)
    assert [list(dict(part.named_children())) for part in split_model(model, [2])] == [
        ["0", "1"],
        ["2", "3", "4"],
    ]
    (whole,) = split_model(model, [])
    assert list(whole) == list(model)


def test_bad_cuts_name_the_cuts_and_the_valid_range() -> None:
    model = build_model("vgg5", 1, 8, 10)
    message = (
        "cuts (0, 3) out of range: each cut must be in 1..4 for a model of 5 units"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        split_model(model, [0, 3])
    with pytest.raises(ValueError, match=re.escape("cuts (5,) out of range")):
        split_model(model, (5,))


def test_cuts_must_strictly_increase() -> None:
    with pytest.raises(
        ValueError, match=re.escape("cuts (3, 2) not strictly increasing")
    ):
        check_cuts(5, (3, 2))
    with pytest.raises(
        ValueError, match=re.escape("cuts (2, 2) not strictly increasing")
    ):
        check_cuts(5, (2, 2))


def test_check_cuts_collects_every_problem_at_once() -> None:
    with pytest.raises(
        ValueError, match=r"cuts \(4, 0\) out of range.*; cuts \(4, 0\) not strictly"
    ):
        check_cuts(5, [4, 0])


@pytest.mark.parametrize(
    ("num_units", "cuts", "message"),
    [
        (1, (1,), "a model of 1 unit cannot be cut"),
        (5, (1.5,), "contain non-integers (1.5,)"),
        (5, (True,), "contain non-integers (True,)"),
        (0, (), "num_units 0 must be"),
    ],
)
def test_check_cuts_rejects(
    num_units: int, cuts: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_cuts(num_units, cuts)


def test_check_cuts_returns_a_tuple() -> None:
    assert check_cuts(5, [1, 4]) == (1, 4)
    assert check_cuts(1, []) == ()


def test_unknown_model_names_it_and_the_choices() -> None:
    message = "unknown model 'foo'; choose one of: vgg5, resnet18, mobilenet_v3_small, vgg19, resnet101"
    with pytest.raises(ValueError, match=re.escape(message)):
        build_model("foo", 3, 32, 10)


def test_bad_build_arguments_are_named_together() -> None:
    with pytest.raises(ValueError, match=r"in_channels 0 .*; num_classes -1 "):
        build_model("resnet18", 0, 32, -1)
    with pytest.raises(
        ValueError, match=re.escape("image_size 3 must be an integer of at least 4")
    ):
        build_model("vgg5", 1, 3, 10)
