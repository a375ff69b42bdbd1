"""TensorBoardSink against TensorBoard's own reader (EventAccumulator): every scalar and histogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradientflow.sinks import TensorBoardSink

from .conftest import STEPS, Recorded, assert_same_points, expected_points, train_with_sink

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="needs the tensorboard extra"
)


def read_events(logdir: Path) -> event_accumulator.EventAccumulator:
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def test_every_scalar_is_written_at_the_probe_step(tmp_path: Path, reference: Recorded) -> None:
    with TensorBoardSink(tmp_path) as sink:
        recorded = train_with_sink(sink)
    events = read_events(tmp_path)
    written = {}
    for name in events.Tags()["scalars"]:
        column, layer = name.split("/", 1)
        written[(column, layer)] = {e.step: e.value for e in events.Scalars(name)}
    assert ("grad_rms", "act#1") in written  # the repeated call has its own series
    assert_same_points(expected_points(recorded.frame), written, rtol=1e-6)  # simple_value is float32
    # the sink changes nothing the probe records
    assert recorded.frame.equals(reference.frame)


def test_histograms_keep_the_probe_bins(tmp_path: Path) -> None:
    with TensorBoardSink(tmp_path) as sink:
        recorded = train_with_sink(sink)
    events = read_events(tmp_path)
    tags = events.Tags()["histograms"]
    assert {"pre_activation/sig", "log10_abs_grad/sig", "pre_activation/act#1"} <= set(tags)
    for (step, quantity, layer), bins in recorded.histograms.groupby(["step", "quantity", "layer"]):
        (event,) = [e for e in events.Histograms(f"{quantity}/{layer}") if e.step == step]
        value = event.histogram_value
        counts = bins["count"].to_numpy()
        filled = np.flatnonzero(counts)
        assert value.num == counts.sum()
        np.testing.assert_array_equal(value.bucket, counts[filled[0] : filled[-1] + 1])
        np.testing.assert_allclose(value.bucket_limit, bins["bin_right"].to_numpy()[filled[0] : filled[-1] + 1])
        assert value.min == bins["bin_left"].to_numpy()[filled[0]]
    assert sorted({e.step for e in events.Histograms("pre_activation/sig")}) == list(range(STEPS))


def test_columns_and_histograms_can_be_left_out(tmp_path: Path) -> None:
    with TensorBoardSink(tmp_path, columns=["grad_rms"], histograms=False) as sink:
        recorded = train_with_sink(sink)
    events = read_events(tmp_path)
    activation_rows = recorded.frame[recorded.frame["kind"] == "activation"]
    assert sorted(events.Tags()["scalars"]) == sorted(
        f"grad_rms/{layer}" for layer in activation_rows["layer"].unique()
    )
    assert events.Tags()["histograms"] == []
