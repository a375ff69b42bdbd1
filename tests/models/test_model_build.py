"""models.build: layer order and names, output shapes, errors that name the problem."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradientflow.errors import ModelError
from gradientflow.models import (
    ACTIVATIONS,
    INITS,
    NORMS,
    ChannelLayerNorm,
    ChannelRMSNorm,
    LinearActivation,
    build,
    group_count,
)
from gradientflow.spec import ACTIVATION_NAMES, INIT_NAMES, NORM_NAMES, ModelSpec


def names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children()]


def test_registries_match_the_names_spec_accepts() -> None:
    assert tuple(ACTIVATIONS) == ACTIVATION_NAMES
    assert tuple(NORMS) == NORM_NAMES
    assert tuple(INITS) == INIT_NAMES


def test_mlp_layers_with_norm_before_activation() -> None:
    model = build(ModelSpec(depth=2, width=8, norm="batch"), (1, 4, 4), 3, seed=0)
    assert names(model) == ["flatten", "fc1", "bn1", "act1", "fc2", "bn2", "act2", "out"]
    assert isinstance(model.bn1, nn.BatchNorm1d) and isinstance(model.act2, nn.Sigmoid)
    assert model.fc1.in_features == 16 and model.out.out_features == 3


def test_mlp_layers_with_norm_after_activation() -> None:
    spec = ModelSpec(depth=2, width=8, norm="layer", norm_position="after_activation", activation="relu")
    model = build(spec, (16,), 3, seed=0)
    assert names(model) == ["flatten", "fc1", "act1", "ln1", "fc2", "act2", "ln2", "out"]
    assert isinstance(model.ln1, nn.LayerNorm) and isinstance(model.act1, nn.ReLU)


@pytest.mark.parametrize(
    ("norm", "prefix", "kind"),
    [
        ("batch", "bn", nn.BatchNorm1d),
        ("layer", "ln", nn.LayerNorm),
        ("group", "gn", nn.GroupNorm),
        ("rms", "rms", nn.RMSNorm),
    ],
)
def test_norm_modules_and_names(norm: str, prefix: str, kind: type) -> None:
    model = build(ModelSpec(depth=1, width=12, norm=norm), (5,), 2, seed=0)
    assert names(model) == ["flatten", "fc1", f"{prefix}1", "act1", "out"]
    assert isinstance(getattr(model, f"{prefix}1"), kind)


def test_no_norm_means_no_norm_module() -> None:
    model = build(ModelSpec(depth=3, width=4), (5,), 2, seed=0)
    assert names(model) == ["flatten", "fc1", "act1", "fc2", "act2", "fc3", "act3", "out"]


def test_group_norm_uses_a_divisor_of_the_width() -> None:
    model = build(ModelSpec(depth=1, width=100, norm="group", groups=8), (5,), 2, seed=0)
    assert model.gn1.num_groups == 5
    assert [group_count(8, c) for c in (100, 4, 7, 64)] == [5, 4, 7, 8]


@pytest.mark.parametrize("norm", NORM_NAMES)
@pytest.mark.parametrize("position", ["before_activation", "after_activation"])
def test_mlp_output_shape(norm: str, position: str) -> None:
    model = build(ModelSpec(depth=2, width=8, norm=norm, norm_position=position), (1, 6, 6), 10, seed=0)
    assert model(torch.zeros(4, 1, 6, 6)).shape == (4, 10)


@pytest.mark.parametrize("norm", NORM_NAMES)
def test_cnn_output_shape_and_names(norm: str) -> None:
    spec = ModelSpec(arch="cnn", norm=norm, channels=(4, 8), activation="relu")
    model = build(spec, (3, 9, 9), 7, seed=0)
    assert model(torch.zeros(2, 3, 9, 9)).shape == (2, 7)
    prefix = {"none": None, "batch": "bn", "layer": "ln", "group": "gn", "rms": "rms"}[norm]
    block = ["conv{i}", *([f"{prefix}{{i}}"] if prefix else []), "act{i}", "pool{i}"]
    expected = [n.format(i=i) for i in (1, 2) for n in block] + ["gap", "flatten", "out"]
    assert names(model) == expected
    assert model.conv1.padding == "same" and model.conv2.in_channels == 4


def test_cnn_norm_types() -> None:
    kinds = {"batch": nn.BatchNorm2d, "layer": ChannelLayerNorm, "group": nn.GroupNorm, "rms": ChannelRMSNorm}
    for norm, kind in kinds.items():
        model = build(ModelSpec(arch="cnn", norm=norm, channels=(4,)), (1, 4, 4), 2, seed=0)
        assert type(list(model.children())[1]) is kind


def test_channel_layer_norm_normalizes_over_channels_at_each_position() -> None:
    x = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(0))
    reference = F.layer_norm(x.permute(0, 2, 3, 1), (5,)).permute(0, 3, 1, 2)
    torch.testing.assert_close(ChannelLayerNorm(5)(x), reference)
    rms = x / x.pow(2).mean(dim=1, keepdim=True).add(torch.finfo(x.dtype).eps).sqrt()
    torch.testing.assert_close(ChannelRMSNorm(5)(x), rms)


def test_activation_modules() -> None:
    spec = ModelSpec(depth=1, width=4, activation="leaky_relu")
    act = build(spec, (3,), 2, seed=0).act1
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.01
    linear = build(spec.model_copy(update={"activation": "linear"}), (3,), 2, seed=0).act1
    assert isinstance(linear, LinearActivation) and linear.gradientflow_activation == "linear"
    x = torch.arange(3.0)
    assert torch.equal(linear(x), x)
    model = build(ModelSpec(depth=2, width=4), (3,), 2, seed=0)
    assert model.act1 is not model.act2  # one module per layer: hooks tell layers apart


def test_cnn_refuses_flat_input_and_too_many_pools() -> None:
    with pytest.raises(
        ModelError, match=r"needs image input shaped \(channels, height, width\), got input_shape \(784,\)"
    ):
        build(ModelSpec(arch="cnn"), (784,), 10, seed=0)
    with pytest.raises(ModelError, match=r"5 conv blocks halves a 28x28 input 5 times to 0x0; use at most 4"):
        build(ModelSpec(arch="cnn", channels=(2, 2, 2, 2, 2)), (1, 28, 28), 10, seed=0)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ModelError, match="input_shape"):
        build(ModelSpec(), (0, 3), 10, seed=0)
    with pytest.raises(ModelError, match="num_classes"):
        build(ModelSpec(), (3,), 0, seed=0)


def test_bias_false_and_parameters_on_cpu() -> None:
    model = build(ModelSpec(depth=2, width=4, bias=False, norm="batch"), (3,), 2, seed=0)
    assert model.fc1.bias is None and model.out.bias is not None
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert torch.equal(model.bn1.running_var, torch.ones(4)) and int(model.bn1.num_batches_tracked) == 0


def test_batch_norm_net_trains_one_step() -> None:
    model = build(ModelSpec(depth=2, width=8, norm="batch"), (1, 4, 4), 3, seed=0)
    x = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
