"""The shared sink pieces: points (NaN left out, inf kept), fan-out, and the missing-extra message."""

from __future__ import annotations

import math
import sys

import pandas as pd
import pytest

from gradientflow.errors import GradientflowError
from gradientflow.sinks import MissingExtra, MultiSink, TensorBoardSink, WandbSink
from gradientflow.sinks.base import scalar_points


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "step": [3, 3, 7],
            "layer": ["a", "b", "a"],
            "order": [0, 1, 0],
            "kind": ["activation", "weight", "activation"],
            "module_type": ["ReLU", "Linear", "ReLU"],
            "activation": ["relu", None, "relu"],
            "grad_rms": [0.5, math.nan, math.inf],
            "weight_norm": [math.nan, 2.0, math.nan],
        }
    )


def test_points_leave_out_nan_and_keep_infinity() -> None:
    assert list(scalar_points(frame())) == [
        (3, [("grad_rms", "a", 0.5), ("weight_norm", "b", 2.0)]),
        (7, [("grad_rms", "a", math.inf)]),
    ]
    assert list(scalar_points(frame(), ["weight_norm"])) == [(3, [("weight_norm", "b", 2.0)]), (7, [])]
    with pytest.raises(KeyError, match=r"columns \['grad_norm'\] are not in the probe's rows"):
        list(scalar_points(frame(), ["grad_norm"]))


def test_multisink_feeds_every_sink_and_raises_the_first_error() -> None:
    got: list[int] = []

    def broken(stats: pd.DataFrame, histograms: pd.DataFrame | None) -> None:
        raise RuntimeError("disk full")

    def also_broken(stats: pd.DataFrame, histograms: pd.DataFrame | None) -> None:
        raise ValueError("bad")

    sink = MultiSink(broken, lambda stats, histograms: got.append(len(stats)), also_broken)
    with pytest.raises(RuntimeError, match="disk full") as error:
        sink(frame(), None)
    assert got == [3]
    assert "another sink also failed: ValueError('bad')" in error.value.__notes__[0]


@pytest.mark.parametrize(
    ("module", "make", "extra"), [("wandb", WandbSink, "wandb"), ("tensorboard", TensorBoardSink, "tensorboard")]
)
def test_a_missing_package_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, make: type, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(
        MissingExtra, match=rf"needs the '{extra}' package .*pip install 'gradientflow\[{extra}\]'"
    ) as error:
        make()
    assert isinstance(error.value, ImportError) and isinstance(error.value, GradientflowError)
