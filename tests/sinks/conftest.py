"""A tiny model trained a few steps with a plain Probe feeding a sink; the frames to compare against."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gradientflow import Probe
from gradientflow.records import LAYER_ID_COLUMNS

STEPS = 4


class TwiceActivated(nn.Module):
    """Linear -> sigmoid -> Linear -> BN -> the same ReLU twice -> Linear: a repeated call gives ``act#1``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.sig, self.fc2 = nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 6)
        self.bn, self.act, self.out = nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn(self.fc2(self.sig(self.fc1(x)))))
        return self.out(self.act(h - 0.1))


@dataclass
class Recorded:
    frame: pd.DataFrame
    histograms: pd.DataFrame


def train_with_sink(sink: Callable | None, histograms: bool = True) -> Recorded:
    """Train `TwiceActivated` for STEPS SGD steps, flushing every 2 recorded steps into `sink`."""
    torch.manual_seed(0)
    model = TwiceActivated()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    with Probe(model, sink=sink, histograms=histograms, flush_every=2) as probe:
        for _ in range(STEPS):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            probe.step()
    return Recorded(probe.frame(), probe.histogram_frame() if histograms else pd.DataFrame())


def expected_points(frame: pd.DataFrame) -> dict[tuple[str, str], dict[int, float]]:
    """Return (column, layer) -> {step: value} for every non-NaN statistic of `frame`: what a sink must write."""
    points: dict[tuple[str, str], dict[int, float]] = {}
    columns = [c for c in frame.columns if c not in LAYER_ID_COLUMNS]
    for row in frame.to_dict("records"):
        for column in columns:
            value = float(row[column])
            if not math.isnan(value):
                points.setdefault((column, row["layer"]), {})[int(row["step"])] = value
    return points


def assert_same_points(expected: dict, written: dict, rtol: float) -> None:
    """Assert the sink wrote exactly the expected (column, layer) series with the same steps and values."""
    assert set(written) == set(expected), set(written) ^ set(expected)
    for key, series in expected.items():
        assert sorted(written[key]) == sorted(series), key
        steps = sorted(series)
        np.testing.assert_allclose(
            [written[key][s] for s in steps], [series[s] for s in steps], rtol=rtol, err_msg=str(key)
        )


@pytest.fixture(scope="session")
def reference() -> Recorded:
    """The rows of the same training without any sink."""
    return train_with_sink(None)
