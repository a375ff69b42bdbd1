"""One row layout for `Probe` and `EnsembleProbe`: the same columns, in the same order, derived alike."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gradientflow import Probe
from gradientflow.probe.buffer import RowInfo
from gradientflow.probe.ensemble import EnsembleProbe
from gradientflow.probe.layout import BN_RAW, WEIGHT_RAW, RowLayout
from gradientflow.probe.rules import rule_for_name
from gradientflow.probe.stats import RAW_GRADIENT, raw_columns
from gradientflow.records import DEFAULT_PERCENTILES, LAYER_ID_COLUMNS, LAYER_STAT_COLUMNS

from .conftest import train_steps

CHOICES = [DEFAULT_PERCENTILES, (50.0,), (2.5, 50.0, 97.5), (10.0, 90.0)]


def probe_frame(percentiles: tuple[float, ...]) -> pd.DataFrame:
    """A lone Probe's table of one step of a model with activation, weight and BatchNorm rows."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3))
    with Probe(model, percentiles=percentiles) as probe:
        train_steps(model, probe, steps=1)
    return probe.frame()


def ensemble_frames(percentiles: tuple[float, ...], members: int = 2) -> list[pd.DataFrame]:
    """Each member's table of one step of an EnsembleProbe with an activation, a weight and a BatchNorm row."""
    rows = [
        RowInfo(0, "0", 0, "weight", "Linear", None),
        RowInfo(1, "1", 1, "norm", "BatchNorm1d", None),
        RowInfo(2, "2", 2, "activation", "Tanh", "tanh"),
    ]
    frames: list[list[pd.DataFrame]] = [[] for _ in range(members)]
    sinks = [lambda stats, _histograms, kept=kept: kept.append(stats) for kept in frames]
    probe = EnsembleProbe(rows, sinks, percentiles=percentiles)
    generator = torch.Generator().manual_seed(0)
    x, g = torch.randn(2, members, 8, 5, generator=generator)
    probe.record(
        0,
        [("2", rule_for_name("tanh", 0.05), x, g)],
        [("0", torch.rand(members, len(WEIGHT_RAW), generator=generator))],
        [("1", torch.rand(members, len(BN_RAW), generator=generator))],
    )
    probe.close()
    return [pd.concat(kept, ignore_index=True) for kept in frames]


def test_the_default_layout_publishes_the_records_columns() -> None:
    assert RowLayout().published == LAYER_STAT_COLUMNS
    assert RowLayout(DEFAULT_PERCENTILES) == RowLayout((15, 50, 85))  # percentiles compare as floats


@pytest.mark.parametrize("percentiles", CHOICES)
def test_a_lone_probe_and_an_ensemble_member_publish_the_layouts_columns(percentiles: tuple[float, ...]) -> None:
    expected = [*LAYER_ID_COLUMNS, *RowLayout(percentiles).published]
    lone = probe_frame(percentiles)
    assert list(lone.columns) == expected
    assert set(lone["kind"]) == {"activation", "weight", "norm"}  # every kind of row was derived
    for member in ensemble_frames(percentiles):
        assert list(member.columns) == expected
        assert len(member) == 3


@pytest.mark.parametrize("percentiles", CHOICES)
def test_raw_columns_are_the_activation_gradient_weight_and_batchnorm_groups(percentiles: tuple[float, ...]) -> None:
    layout = RowLayout(percentiles)
    assert layout.raw == raw_columns(percentiles) + RAW_GRADIENT + WEIGHT_RAW + BN_RAW
    assert layout.indices(layout.raw) == list(range(len(layout.raw)))
    assert layout.raw[layout.span(WEIGHT_RAW)] == WEIGHT_RAW
    assert layout.raw[layout.span(BN_RAW)] == BN_RAW
    with pytest.raises(ValueError, match="not adjacent"):
        layout.span(("weight_norm", "update_norm"))


def test_derive_gives_the_hand_computed_columns() -> None:
    layout = RowLayout((15.0, 50.0))
    nan = math.nan
    # row 0: an activation row of 5 elements (2 units), all sampled; row 1: a weight row
    values = {
        "n": [5.0, nan],
        "units": [2.0, nan],
        "n_sample": [5.0, nan],
        "pivot": [1.0, nan],
        "centered_sum": [2.0, nan],  # sum(x - 1) over 5 elements: mean 1.4
        "centered_norm": [3.0, nan],  # |x - 1| = 3: E[(x - 1)^2] = 9/5
        "pre_min": [-1.0, nan],
        "pre_max": [4.0, nan],
        "q_low_0": [0.0, nan],  # 15th percentile at position 0.6 between 0 and 1
        "q_low_1": [1.0, nan],  # median at position 2, exactly the lower neighbour
        "q_high_0": [1.0, nan],
        "q_high_1": [3.0, nan],
        "saturated_count": [1.0, nan],
        "dead_count": [1.0, nan],
        "nonfinite_count": [0.0, nan],
        "grad_sum": [0.5, nan],
        "grad_norm": [2.0, nan],
        "weight_norm": [nan, 3.0],
        "weight_grad_norm": [nan, 0.25],
        "update_norm": [nan, 0.03],
        "tracked_weight_norm": [nan, 1.5],
        **{name: [nan, float(i)] for i, name in enumerate(BN_RAW)},
    }
    raw = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    assert set(raw) == set(layout.raw)
    out = layout.derive(raw)
    assert set(out) == set(layout.published)
    grad_rms = 2.0 / np.sqrt(5.0)
    expected = {
        "pre_mean": [1.4, nan],
        "pre_std": [np.sqrt(9 / 5 - 0.4**2), nan],
        "pre_min": [-1.0, nan],
        "pre_max": [4.0, nan],
        "pre_p15": [0.6, nan],
        "pre_p50": [1.0, nan],
        "saturated_frac": [0.2, nan],
        "dead_units_frac": [0.5, nan],
        "nonfinite_count": [0.0, nan],
        "grad_rms": [grad_rms, nan],
        "grad_norm": [2.0, nan],
        "grad_mean": [0.1, nan],
        "grad_std": [np.sqrt(grad_rms**2 - 0.1**2), nan],
        "weight_norm": [nan, 3.0],
        "weight_grad_norm": [nan, 0.25],
        "update_ratio": [nan, 0.02],  # a plain ratio, not percent
        **{name: [nan, float(i)] for i, name in enumerate(BN_RAW)},
    }
    for name in layout.published:
        assert out[name].dtype == np.float64, name
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-12, err_msg=name)


def test_derive_of_a_zero_norm_is_nan_or_inf_without_a_warning() -> None:
    layout = RowLayout()
    raw = {name: np.full(2, math.nan) for name in layout.raw}
    raw["update_norm"] = np.array([0.0, 1.0])
    raw["tracked_weight_norm"] = np.array([0.0, 0.0])
    with np.errstate(all="raise"):
        ratio = layout.derive(raw)["update_ratio"]
    assert math.isnan(ratio[0]) and math.isinf(ratio[1])
