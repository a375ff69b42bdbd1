"""The cheap paths of every-step recording: small layers' statistics deferred over several steps, and
the weight snapshot that one step's update pass keeps for the next step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gradientflow import Probe
from gradientflow.probe import native, pending

from .conftest import fixed_mlp, train_steps

needs_native = pytest.mark.skipif(native.library() is None, reason="no C compiler: the native path is unavailable")


def _frame(steps: int, activation: nn.Module | None = None) -> pd.DataFrame:
    model = fixed_mlp(activation)
    with Probe(model, flush_every=7) as probe:
        train_steps(model, probe, steps=steps)
    return probe.frame()


@needs_native
def test_deferred_statistics_equal_those_computed_at_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    # sigmoid and tanh layers of the same shape form two groups of one deferred batch: each must
    # keep its own results, in its own steps' slots, across flushes that cut through the batch
    steps = 2 * pending.DEFER_STEPS + 3
    deferred = _frame(steps, nn.Tanh())
    monkeypatch.setattr(pending, "DEFER_STEPS", 1)
    at_once = _frame(steps, nn.Tanh())
    assert len(deferred) == len(at_once) == steps * 5
    assert set(deferred["activation"].dropna()) == {"sigmoid", "tanh"}
    pd.testing.assert_frame_equal(deferred, at_once)


def test_the_removed_background_argument_warns_and_changes_nothing() -> None:
    model = fixed_mlp()
    with pytest.warns(DeprecationWarning, match=r"background=\.\.\.\) is deprecated and has no effect"):
        probe = Probe(model, background=False)
    with probe:
        train_steps(model, probe, steps=3)
    pd.testing.assert_frame_equal(probe.frame(), _frame(3))


def _weights_by_hand(model: nn.Sequential, steps: int, shrink_after: int) -> tuple[list[float], list[float]]:
    """Train like `train_steps`, shrinking the first weight in place after step `shrink_after`'s
    probe.step(); return that weight's norm before each step and its update ratio, by hand."""
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    weight = model[0].weight
    norms, ratios = [], []
    for step in range(steps):
        x, y = torch.randn(8, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)
        before = weight.detach().clone()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        norms.append(before.norm().item())
        ratios.append(((weight.detach() - before).norm() / before.norm()).item())
        if step == shrink_after:
            with torch.no_grad():
                weight.mul_(0.5)
    return norms, ratios


@pytest.mark.parametrize("every", [1, 2])
def test_update_ratio_follows_a_weight_changed_in_place_between_steps(every: int) -> None:
    # every=1 keeps each step's weights from the update pass as the next step's snapshot; a change
    # made in place between probe.step() and the next forward must invalidate it
    steps, shrink_after = 6, 2
    norms, ratios = _weights_by_hand(fixed_mlp(), steps, shrink_after)
    model = fixed_mlp()
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, every=every) as probe:
        for step in range(steps):
            x, y = torch.randn(8, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            probe.step()
            if step == shrink_after:
                with torch.no_grad():
                    model[0].weight.mul_(0.5)
    rows = probe.frame().query("layer == '0'").set_index("step")
    recorded = list(range(0, steps, every))
    np.testing.assert_allclose(rows.loc[recorded, "weight_norm"], [norms[s] for s in recorded], rtol=1e-5)
    np.testing.assert_allclose(rows.loc[recorded, "update_ratio"], [ratios[s] for s in recorded], rtol=1e-4)
