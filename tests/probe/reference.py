"""An independent reference for the probe's activation rows: numpy statistics of pre-activations
kept by the test's own hooks with retain_grad, and saturation from autograd's derivative."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from gradientflow.probe import kept, pending
from gradientflow.probe.stats import _sample_positions

EPS = 0.05
#: the columns compared with the probe's, and the tolerance
COLUMNS = ("pre_mean", "pre_std", "pre_min", "pre_max", "saturated_frac", "dead_units_frac", "grad_rms", "grad_norm")


def saturated_by_autograd(function: Callable[[torch.Tensor], torch.Tensor], values: torch.Tensor) -> np.ndarray:
    """Where |function'(x)| < EPS * max |function'| (max over a fine grid), by autograd: bool array like `values`."""
    z = values.detach().double().clone().requires_grad_(True)
    function(z).sum().backward()
    grid = torch.linspace(-20, 20, 400_001, dtype=torch.float64, requires_grad=True)
    function(grid).sum().backward()
    return (z.grad.abs() < EPS * grid.grad.abs().max()).numpy()


def reference_row(
    pre: torch.Tensor,
    grad: torch.Tensor | None,
    function: Callable[[torch.Tensor], torch.Tensor],
    unit_dim: int = -1,
    samples: int | None = 4096,
) -> dict[str, float]:
    """The probe's columns of one activation row from its pre-activation and gradient (units along
    `unit_dim`); with `samples`, the median is that of the probe's fixed subsample of that size."""
    values = pre.detach().double()
    saturated = saturated_by_autograd(function, values)
    per_unit = np.moveaxis(saturated, unit_dim, 0).reshape(saturated.shape[unit_dim], -1)
    v = values.numpy()
    out = {
        "pre_mean": v.mean(),
        "pre_std": v.std(),
        "pre_min": v.min(),
        "pre_max": v.max(),
        "pre_p50": np.percentile(_subsample(v, unit_dim, samples), 50),
        "saturated_frac": saturated.mean(),
        "dead_units_frac": per_unit.all(axis=1).mean(),
    }
    if grad is not None:
        g = grad.double().numpy()
        out |= {"grad_rms": np.sqrt((g**2).mean()), "grad_norm": np.sqrt((g**2).sum())}
    return out


def _subsample(v: np.ndarray, unit_dim: int, samples: int | None) -> np.ndarray:
    # the probe lays a tensor out as (examples, units, rest) and samples fixed positions of that
    flat = (
        v.reshape(-1)
        if unit_dim % v.ndim in (1, v.ndim - 1) or v.ndim <= 2
        else np.moveaxis(v, unit_dim, 1).reshape(-1)
    )
    if samples is None or flat.size <= samples:
        return flat
    return flat[_sample_positions(flat.size, samples, torch.device("cpu")).numpy()]


def assert_rows_match(frame, expected: dict[str, dict[str, float]], rtol: float = 1e-4) -> None:
    """Every expected (layer, column) equals the probe's, within `rtol` (and a small absolute floor)."""
    table = frame.set_index("layer")
    missing = sorted(set(expected) - set(table.index))
    assert not missing, f"rows missing: {missing}; the probe has {list(table.index)}"
    for layer, columns in expected.items():
        for column, value in columns.items():
            got = table.loc[layer, column]
            assert got == pytest.approx(value, rel=rtol, abs=1e-6), f"{layer}.{column}: probe {got}, reference {value}"


@pytest.fixture(params=["default", "low"])
def thresholds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Run a reference test as it is, and with every size threshold forced low so that the paths
    for large tensors (gradient hooks, unstacked groups, immediate computation, subsampled
    percentiles) are the ones taken. Returns the Probe keyword arguments to use."""
    if request.param == "default":
        return {}
    monkeypatch.setattr(kept, "RETAIN_LIMIT", 4)
    monkeypatch.setattr(pending, "STACK_LIMIT", 4)
    monkeypatch.setattr(pending, "DEFER_BYTES", 16)
    return {"max_percentile_samples": 8}
