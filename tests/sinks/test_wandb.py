"""WandbSink in offline mode, its history read back from the run's own .wandb file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("wandb", reason="needs the wandb extra")

from gradientflow.sinks import STEP_METRIC, WandbSink, tag

from .conftest import STEPS, Recorded, assert_same_points, expected_points, train_with_sink
from .wandb_records import history


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    return tmp_path


def test_offline_run_holds_every_value_and_histogram(offline: Path, reference: Recorded) -> None:
    with WandbSink(mode="offline", project="tiny", dir=str(offline)) as sink:
        train_with_sink(sink)
    (run_dir,) = (offline / "wandb").glob("offline-run-*")
    logged = history(run_dir)
    assert [row[STEP_METRIC] for row in logged] == list(range(STEPS))  # one log call per recorded step
    written: dict = {}
    for row in logged:
        for key, value in row.items():
            column, _, layer = key.partition("/")
            if column in reference.frame.columns and isinstance(value, (int, float)):
                written.setdefault((column, layer), {})[row[STEP_METRIC]] = float(value)
    assert_same_points(expected_points(reference.frame), written, rtol=1e-12)
    bins = reference.histograms
    first = bins[(bins["step"] == 0) & (bins["quantity"] == "pre_activation") & (bins["layer"] == "sig")]
    key = tag("pre_activation", "sig")
    assert logged[0][f"{key}/_type"] == "histogram"
    np.testing.assert_array_equal(logged[0][f"{key}/values"], first["count"].to_numpy())
    np.testing.assert_allclose(logged[0][f"{key}/bins"][:-1], first["bin_left"].to_numpy())


def test_an_existing_run_stays_open(offline: Path) -> None:
    import wandb

    run = wandb.init(mode="offline", project="mine", dir=str(offline))
    try:
        with WandbSink(run, columns=["grad_rms"], histograms=False) as sink:
            train_with_sink(sink, histograms=False)
        run.log({"after": 1.0})  # would fail on a finished run
    finally:
        run.finish()
    (run_dir,) = (offline / "wandb").glob("offline-run-*")
    logged = history(run_dir)
    assert {"grad_rms/sig", STEP_METRIC} <= set(logged[0]) and "pre_mean/sig" not in logged[0]
    assert logged[-1]["after"] == 1.0
