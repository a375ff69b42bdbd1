"""Every recorded statistic against an independent reference: autograd with retain_grad and numpy."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from gradientflow import Probe
from gradientflow.probe.activations import rule_for_module

from .conftest import fixed_mlp
from .reference import thresholds  # noqa: F401  (a fixture)

RTOL = 1e-5


def reference_step(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, lr: float, eps: float = 0.05) -> dict:
    """One SGD step computed by hand: pre-activations and their gradients via retain_grad."""
    model = copy.deepcopy(model)
    pre: dict[str, torch.Tensor] = {}
    h = x
    for name, module in model.named_children():
        if isinstance(module, (nn.Sigmoid, nn.ReLU, nn.Tanh)):
            h.retain_grad()
            pre[name] = h
        h = module(h) if not getattr(module, "inplace", False) else module(h.clone())
    loss = nn.functional.cross_entropy(h, y)
    loss.backward()
    weights_before = {n: m.weight.detach().clone() for n, m in model.named_children() if isinstance(m, nn.Linear)}
    grads = {n: m.weight.grad.detach().clone() for n, m in model.named_children() if isinstance(m, nn.Linear)}
    out: dict[str, dict[str, float]] = {}
    for name, tensor in pre.items():
        module = model.get_submodule(name)
        values = tensor.detach().double().numpy()
        grad = tensor.grad.double().numpy()
        # derivative of the activation by autograd, as a second method for saturation
        z = tensor.detach().clone().requires_grad_(True)
        type(module)()(z).sum().backward()
        derivative = z.grad.abs().double().numpy()
        grid = torch.linspace(-20, 20, 400_001, dtype=torch.float64, requires_grad=True)
        type(module)()(grid).sum().backward()
        top = grid.grad.abs().max().item()
        saturated = derivative < eps * top
        out[name] = {
            "pre_mean": values.mean(),
            "pre_std": values.std(),
            "pre_min": values.min(),
            "pre_max": values.max(),
            "pre_p15": np.percentile(values, 15),
            "pre_p50": np.percentile(values, 50),
            "pre_p85": np.percentile(values, 85),
            "saturated_frac": saturated.mean(),
            "dead_units_frac": saturated.all(axis=0).mean(),
            "grad_rms": np.sqrt((grad**2).mean()),
            "grad_norm": np.sqrt((grad**2).sum()),
            "grad_mean": grad.mean(),
            "grad_std": grad.std(),
        }
    for name, weight in weights_before.items():
        after = weight - lr * grads[name]
        out[name] = {
            "weight_norm": np.linalg.norm(weight.double().numpy()),
            "weight_grad_norm": np.linalg.norm(grads[name].double().numpy()),
            "update_ratio": np.linalg.norm((after - weight).double().numpy()) / np.linalg.norm(weight.double().numpy()),
        }
    return out


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.Tanh(), nn.Sigmoid()])
def test_every_statistic_matches_reference(activation: nn.Module, thresholds: dict[str, int]) -> None:  # noqa: F811
    model = fixed_mlp(activation)
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(3)) * 3  # scaled so some units saturate
    y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(4))
    expected = reference_step(model, x, y, lr=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, **thresholds) as probe:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        probe.step()
    frame = probe.frame().set_index("layer")
    for layer, columns in expected.items():
        for column, value in columns.items():
            if thresholds and column.startswith("pre_p"):
                continue  # a subsample's percentiles: checked against numpy in reference.py's users
            got = frame.loc[layer, column]
            assert got == pytest.approx(value, rel=RTOL, abs=1e-7), f"{layer}.{column}: probe {got}, reference {value}"
    assert frame.loc["1", "activation"] == "sigmoid"
    assert list(frame["order"]) == [0, 1, 2, 3, 4]


def test_saturation_is_measured_somewhere() -> None:
    # guard against a reference test that passes only because nothing saturates
    model = fixed_mlp(nn.Sigmoid())
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(3)) * 30
    with Probe(model) as probe:
        model(x).sum().backward()
        probe.step()
    frame = probe.frame().set_index("layer")
    assert 0.1 < frame.loc["1", "saturated_frac"] < 1.0


@pytest.mark.parametrize(
    "module",
    [
        nn.Sigmoid(),
        nn.Tanh(),
        nn.ReLU(),
        nn.LeakyReLU(0.01),
        nn.LeakyReLU(0.2),
        nn.ELU(),
        nn.GELU(),
        nn.SiLU(),
        nn.Softplus(),
        nn.Hardtanh(),
        nn.ReLU6(),
        nn.Mish(),
        nn.SELU(),
        nn.CELU(0.5),
        nn.ELU(3.0),
        nn.Hardswish(),
        nn.Hardsigmoid(),
        nn.LogSigmoid(),
        nn.GELU(approximate="tanh"),
        nn.Hardtanh(-2.0, 0.5),
    ],
    ids=lambda m: type(m).__name__ + str(getattr(m, "negative_slope", getattr(m, "alpha", ""))),
)
def test_saturation_rule_agrees_with_autograd_derivative(module: nn.Module) -> None:
    eps = 0.05
    rule = rule_for_module(module, eps)
    x = torch.cat(
        [torch.linspace(-12, 12, 20_001, dtype=torch.float64), torch.tensor([0.0, -1.0, 1.0, 6.0], dtype=torch.float64)]
    )
    z = x.clone().requires_grad_(True)
    module(z).sum().backward()
    derivative = z.grad.abs()
    grid = torch.linspace(-20, 20, 400_001, dtype=torch.float64, requires_grad=True)
    module(grid).sum().backward()
    expected = derivative < eps * grid.grad.abs().max()
    got = rule.saturated(x)
    # the closed-form thresholds may differ from the grid only at the boundary itself
    mismatch = (got != expected).nonzero().flatten()
    assert len(mismatch) <= 2, f"{type(module).__name__}: disagree at x={x[mismatch][:5].tolist()}"


def test_percentiles_of_large_layers_use_a_close_subsample() -> None:
    from gradientflow.probe.activations import rule_for_name
    from gradientflow.probe.stats import pre_activation_stats

    x = torch.randn(1, 512, 256, 1, generator=torch.Generator().manual_seed(0))
    values = pre_activation_stats(x, rule_for_name("tanh", 0.05), (15.0, 50.0, 85.0), max_percentile_samples=4096)
    exact = np.percentile(x.numpy().ravel(), [15, 50, 85])
    # standard error of a 15th percentile from 4096 normal samples is about 0.024: allow 5 of them
    assert np.allclose(values[0, 4:7].numpy(), exact, atol=0.12)
    assert not np.allclose(values[0, 4:7].numpy(), exact, atol=1e-6)  # it is a subsample, documented as such


HF_CLASSES = [
    "GELUActivation",
    "NewGELUActivation",
    "FastGELUActivation",
    "QuickGELUActivation",
    "AccurateGELUActivation",
    "SiLUActivation",
    "MishActivation",
    "ReLUSquaredActivation",
]


@pytest.mark.parametrize("name", HF_CLASSES)
def test_other_libraries_activation_classes_get_the_rule_of_their_own_derivative(name: str) -> None:
    transformers_activations = pytest.importorskip("transformers.activations")
    module = getattr(transformers_activations, name)()
    rule = rule_for_module(module, 0.05)
    x = torch.linspace(-12, 12, 20_001, dtype=torch.float64)
    z = x.clone().requires_grad_(True)
    module(z).sum().backward()
    grid = torch.linspace(-20, 20, 400_001, dtype=torch.float64, requires_grad=True)
    module(grid).sum().backward()
    top = grid.grad.abs().max()
    if name == "ReLUSquaredActivation":  # unbounded derivative: saturated only where it is dead (x <= 0)
        expected = z.grad == 0
    else:
        expected = z.grad.abs() < 0.05 * top
    mismatch = (rule.saturated(x) != expected).nonzero().flatten()
    assert len(mismatch) <= 2, f"{name}: disagree at x={x[mismatch][:5].tolist()}"


def test_every_act2fn_entry_with_a_saturation_rule_is_recognised() -> None:
    transformers_activations = pytest.importorskip("transformers.activations")
    from gradientflow.probe.activations import activation_name

    unmodelled = {"laplace", "xielu", "prelu", "sqrtsoftplus", "gelu_10"}  # no rule of their shape; PReLU has a weight
    missing = [
        key
        for key in transformers_activations.ACT2CLS
        if key not in unmodelled and activation_name(transformers_activations.ACT2FN[key]) is None
    ]
    assert not missing
