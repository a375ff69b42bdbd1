"""Activations however applied -- functional calls, Tensor methods, in-place forms, registered
functions and classes -- against a hand-written forward that keeps the pre-activations."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

import gradientflow
from gradientflow import Probe
from gradientflow.errors import ProbeError
from gradientflow.probe import NoActivationWarning, activations

from .reference import assert_rows_match, reference_row, thresholds  # noqa: F401  (a fixture)

FUNCTIONS = {
    "sigmoid": torch.sigmoid,
    "silu": F.silu,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "leaky_relu": functools.partial(F.leaky_relu, negative_slope=0.02),
    "hardtanh": functools.partial(F.hardtanh, min_val=-0.5, max_val=2.0),
}


class FunctionalNet(nn.Module):
    """Every activation applied by a function, one of them in place, one through a Tensor method."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.ModuleList(nn.Linear(6 if i == 0 else 16, 16) for i in range(7))
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor, keep: list[torch.Tensor] | None = None) -> torch.Tensor:
        def pre(i: int, h: torch.Tensor) -> torch.Tensor:
            z = self.fc[i](h)
            if keep is not None:  # the hand-written reference: keep z, never overwrite it
                z.retain_grad()
                keep.append(z)
            return z

        h = torch.sigmoid(pre(0, x))
        h = F.silu(pre(1, h))
        z = pre(2, h)
        h = F.relu(z.clone() if keep is not None else z, inplace=True)
        h = pre(3, h).tanh()
        h = F.gelu(pre(4, h))
        h = F.leaky_relu(pre(5, h), 0.02)
        h = F.hardtanh(pre(6, h), -0.5, 2.0)
        return self.out(h)


ROWS = ["sigmoid", "silu", "relu", "tanh", "gelu", "leaky_relu", "hardtanh"]


def _batch(seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(32, 6, generator=generator) * 3, torch.randint(0, 3, (32,), generator=generator)


def test_functional_activations_match_a_hand_written_forward(thresholds: dict[str, int]) -> None:  # noqa: F811
    model = FunctionalNet()
    x, y = _batch()
    keep: list[torch.Tensor] = []
    F.cross_entropy(model(x, keep), y).backward()
    expected = {
        name: reference_row(z, z.grad, FUNCTIONS[name], samples=thresholds.get("max_percentile_samples", 4096))
        for name, z in zip(ROWS, keep)
    }
    model.zero_grad()
    with Probe(model, **thresholds) as probe:
        F.cross_entropy(model(x), y).backward()
        probe.step()
    frame = probe.frame()
    assert_rows_match(frame, expected)
    rows = frame[frame.kind == "activation"].sort_values("order")
    assert list(rows["layer"]) == ROWS  # forward order
    assert list(rows["activation"]) == ROWS
    assert rows.set_index("layer").loc["relu", "pre_min"] < 0  # seen before the in-place write


def test_names_are_stable_over_steps_and_repeated_calls_are_numbered() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.fc(torch.relu(x)))

    model = nn.Sequential(Block(), Block())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model) as probe:
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.randn(5, 4)).sum().backward()
            optimizer.step()
            probe.step()
    frame = probe.frame()
    per_step = [list(frame[frame.step == s].sort_values("order")["layer"]) for s in range(3)]
    assert per_step[0] == ["0:relu", "0.fc", "0:relu#1", "1:relu", "1.fc", "1:relu#1"]
    assert per_step[1] == per_step[0] and per_step[2] == per_step[0]
    assert set(frame.loc[frame.layer.str.contains(":"), "kind"]) == {"activation"}
    assert set(frame.loc[frame.layer.str.contains(":"), "module_type"]) == {"relu()"}


@pytest.mark.parametrize(
    "apply",
    [
        lambda z: z.relu_(),
        lambda z: torch.relu_(z),
        lambda z: F.relu(z, inplace=True),
        lambda z: F.relu(gradientflow.tap(z, "tapped", "relu"), inplace=True),
        lambda z: nn.ReLU(inplace=True)(gradientflow.tap(z, "tapped", "relu")),
    ],
    ids=["Tensor.relu_", "torch.relu_", "F.relu-inplace", "tap-then-F.relu-inplace", "tap-then-ReLU-inplace"],
)
def test_in_place_activation_records_the_pre_activation_and_its_gradient(apply) -> None:
    torch.manual_seed(0)
    fc, head = nn.Linear(5, 8), nn.Linear(8, 2)
    x = torch.randn(16, 5)
    z = fc(x)
    z.retain_grad()
    head(torch.relu(z)).square().sum().backward()
    expected = reference_row(z, z.grad, torch.relu)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.head = fc, head

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(apply(self.fc(x)))

    model = Net()
    with Probe(model) as probe:
        model(x).square().sum().backward()
        probe.step()
    frame = probe.frame()
    activations_rows = frame[frame.kind.isin(["activation", "tap"])]
    assert len(activations_rows) == 1, list(activations_rows["layer"])  # a tapped tensor's call is no second row
    assert_rows_match(frame, {activations_rows.iloc[0]["layer"]: expected})


def test_in_place_write_of_a_kept_tensor_by_another_op_is_seen_before_it() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.fc(x)
            h = torch.sigmoid(z)
            z.mul_(0.0)  # the sigmoid's saved output is what autograd needs; z itself may change
            return h + z

    model = Net()
    x = torch.randn(4, 3)
    with torch.no_grad():
        expected = model.fc(x)
    with Probe(model) as probe:
        model(x).sum().backward()
        probe.step()
    row = probe.frame().set_index("layer").loc["sigmoid"]
    assert row["pre_mean"] == pytest.approx(expected.mean().item(), rel=1e-6)


def test_a_recorded_step_without_activation_warns_once_naming_the_leaf_modules() -> None:
    class MyAct(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.erf(x)

    model = nn.Sequential(nn.Linear(4, 4), MyAct(), nn.Dropout(0.0), nn.Linear(4, 1))
    with pytest.warns(NoActivationWarning) as caught, Probe(model) as probe:
        for _ in range(2):
            model(torch.randn(3, 4)).sum().backward()
            probe.step()
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "found no activation in recorded step 0 of Sequential" in message
    assert "1 (MyAct)" in message and "Dropout" not in message
    assert "gradientflow.register_activation(ItsClass, 'gelu')" in message


def test_a_step_with_activations_does_not_warn() -> None:
    model = FunctionalNet()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoActivationWarning)
        with Probe(model) as probe:
            model(torch.randn(2, 6)).sum().backward()
            probe.step()


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(activations, "_REGISTERED", {})
    monkeypatch.setattr(activations, "_REGISTERED_NORMS", set())
    monkeypatch.setattr(activations, "OPS", dict(activations.OPS))
    from gradientflow.probe import capture

    monkeypatch.setattr(capture, "OPS", activations.OPS)


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _swish(x)


def _swish_net(act: nn.Module | None, function=None) -> nn.Module:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc, self.act, self.head = nn.Linear(4, 6), act, nn.Linear(6, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.fc(x)
            return self.head(self.act(z) if function is None else function(z))

    return Net()


def _swish_reference(x: torch.Tensor) -> dict[str, float]:
    model = _swish_net(Swish())
    z = model.fc(x)
    z.retain_grad()
    model.head(_swish(z)).sum().backward()
    return reference_row(z, z.grad, F.silu)


def test_a_registered_class_gives_one_row_about_its_input(clean_registry: None) -> None:
    assert gradientflow.register_activation(Swish, "silu") is Swish
    model, x = _swish_net(Swish()), torch.randn(8, 4)
    with Probe(model) as probe:
        model(x).sum().backward()
        probe.step()
    frame = probe.frame()
    assert list(frame.loc[frame.kind == "activation", "layer"]) == ["act"]  # not also act:sigmoid
    assert frame.set_index("layer").loc["act", "activation"] == "silu"
    assert_rows_match(frame, {"act": _swish_reference(x)})


def test_a_registered_function_gives_one_row_named_by_its_caller(clean_registry: None) -> None:
    swish = gradientflow.register_activation(_swish, "silu")
    assert swish(torch.tensor([1.0])) == _swish(torch.tensor([1.0]))  # same result without a probe
    model, x = _swish_net(None, swish), torch.randn(8, 4)
    with Probe(model) as probe:
        model(x).sum().backward()
        probe.step()
    frame = probe.frame()
    assert list(frame.loc[frame.kind == "activation", "layer"]) == ["_swish"]
    assert_rows_match(frame, {"_swish": _swish_reference(x)})


def test_the_class_attribute_opts_a_module_in() -> None:
    class Declared(Swish):
        gradientflow_activation = "silu"

    model, x = _swish_net(Declared()), torch.randn(8, 4)
    with Probe(model) as probe:
        model(x).sum().backward()
        probe.step()
    assert_rows_match(probe.frame(), {"act": _swish_reference(x)})


def test_registration_refuses_unknown_names_and_non_modules(clean_registry: None) -> None:
    with pytest.raises(ProbeError, match="activation 'swishy' is not known; use one of .*silu"):
        gradientflow.register_activation(Swish, "swishy")
    with pytest.raises(ProbeError, match="torch.nn.Module subclass or a function"):
        gradientflow.register_activation(int, "silu")


def test_norms_of_any_class_give_norm_rows(clean_registry: None) -> None:
    class MyRMSNorm(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(width))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    class Scale(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(width))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.weight * x

    model = nn.Sequential(nn.Linear(4, 4), MyRMSNorm(4), nn.GELU(), Scale(4), nn.LayerNorm(4))
    kinds = lambda: _kinds(model)  # noqa: E731
    assert kinds() == {"0": "weight", "1": "norm", "2": "activation", "3": "weight", "4": "norm"}
    gradientflow.register_norm(Scale)
    assert kinds()["3"] == "norm"


def _kinds(model: nn.Module) -> dict[str, str]:
    with Probe(model) as probe:
        model(torch.randn(3, 4)).sum().backward()
        probe.step()
    return dict(probe.frame()[["layer", "kind"]].itertuples(index=False))


@pytest.mark.parametrize("reentrant", [False, True])
def test_a_checkpointed_forward_recomputed_in_backward_is_not_captured_twice(reentrant: bool) -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.fc(x))

    class Net(nn.Module):
        def __init__(self, checkpointed: bool) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.inner, self.outer, self.checkpointed = Block(), nn.Linear(6, 6), checkpointed

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.sigmoid(self.outer(x))
            if self.checkpointed:
                return checkpoint(self.inner, h, use_reentrant=reentrant)
            return self.inner(h)

    x = torch.randn(5, 6, requires_grad=True)
    frames = []
    for checkpointed in (False, True):
        model = Net(checkpointed)
        with Probe(model) as probe:
            model(x).sum().backward()
            probe.step()
        frames.append(probe.frame().set_index("layer"))
    plain, checkpointed_frame = frames
    assert not checkpointed_frame.index.duplicated().any()
    assert not any("#" in layer for layer in checkpointed_frame.index)
    columns = ["pre_mean", "pre_std", "grad_rms"]
    np.testing.assert_allclose(checkpointed_frame.loc["sigmoid", columns], plain.loc["sigmoid", columns], rtol=1e-6)
    if not reentrant:  # the segment ran with autograd on: seen once, with its gradient
        np.testing.assert_allclose(
            checkpointed_frame.loc["inner:tanh", columns], plain.loc["inner:tanh", columns], rtol=1e-6
        )
    else:  # PyTorch runs a reentrant segment without autograd the first time: nothing to see in it
        assert "inner:tanh" not in checkpointed_frame.index


def test_units_of_a_sequence_are_the_features_and_of_a_conv_the_channels() -> None:
    torch.manual_seed(0)
    linear, conv = nn.Linear(4, 6), nn.Conv1d(3, 6, 1)
    with torch.no_grad():
        linear.bias.copy_(torch.tensor([-100.0, -100.0, 100, 100, 100, 100]))  # 2 of 6 features dead
        conv.bias.copy_(torch.tensor([-100.0, 100, 100, 100, 100, 100]))  # 1 of 6 channels dead

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear, self.conv = linear, conv

        def forward(self, tokens: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.linear(tokens)).sum() + torch.relu(self.conv(signal)).sum()

    model = Net()
    tokens, signal = torch.rand(2, 5, 4), torch.rand(2, 3, 5)  # (batch, sequence, features); (batch, channels, length)
    with Probe(model) as probe:
        model(tokens, signal).backward()
        probe.step()
    rows = probe.frame().set_index("layer")
    assert rows.loc["relu", "dead_units_frac"] == pytest.approx(2 / 6)
    assert rows.loc["relu#1", "dead_units_frac"] == pytest.approx(1 / 6)
    with Probe(model, unit_dim=1) as probe:  # an explicit unit_dim overrides: sequence positions are units
        model(tokens, signal).backward()
        probe.step()
    assert probe.frame().set_index("layer").loc["relu", "dead_units_frac"] == 0.0


@pytest.mark.parametrize(
    ("call", "reference"),
    [
        (lambda z: F.elu(z, 0.5), lambda z: F.elu(z, 0.5)),
        (lambda z: F.celu(z, alpha=2.0), lambda z: F.celu(z, 2.0)),
        (lambda z: F.softplus(z, beta=3.0), lambda z: F.softplus(z, 3.0)),
        (lambda z: F.selu(z), F.selu),
        (lambda z: F.hardswish(z), F.hardswish),
        (lambda z: F.hardsigmoid(z), F.hardsigmoid),
        (lambda z: F.logsigmoid(z), F.logsigmoid),
        (lambda z: F.mish(z), F.mish),
        (lambda z: F.relu6(z), F.relu6),
        (lambda z: F.gelu(z, approximate="tanh"), functools.partial(F.gelu, approximate="tanh")),
        (lambda z: F.leaky_relu(z, 0.01), functools.partial(F.leaky_relu, negative_slope=0.01)),
    ],
    ids=[
        "elu",
        "celu",
        "softplus",
        "selu",
        "hardswish",
        "hardsigmoid",
        "logsigmoid",
        "mish",
        "relu6",
        "gelu-tanh",
        "leaky",
    ],
)
def test_saturation_of_functional_calls_reads_their_parameters(call, reference) -> None:
    torch.manual_seed(0)
    fc = nn.Linear(3, 64)
    x = torch.randn(40, 3) * 4

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = fc

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return call(self.fc(x))

    z = fc(x)
    z.retain_grad()
    reference(z).square().sum().backward()
    expected = reference_row(z, z.grad, reference)
    model = Net()
    with Probe(model) as probe:
        model(x).square().sum().backward()
        probe.step()
    frame = probe.frame()
    (layer,) = frame.loc[frame.kind == "activation", "layer"]
    assert 0.0 < expected["saturated_frac"] < 1.0 or layer in ("leaky_relu", "elu", "celu")
    assert_rows_match(frame, {layer: expected})


def test_layers_select_functional_rows_by_their_module_or_their_own_name() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.fc(torch.relu(x)))

    model = nn.Sequential(Block(), Block())

    def layers_of(selection: list) -> list[str]:
        with Probe(model, layers=selection) as probe:
            model(torch.randn(3, 4)).sum().backward()
            probe.step()
        return sorted(probe.frame()["layer"])

    assert layers_of(["0"]) == ["0:relu", "0:tanh"]
    assert layers_of(["*:tanh"]) == ["0:tanh", "1:tanh"]
    assert layers_of([nn.Linear]) == ["0.fc", "1.fc"]
