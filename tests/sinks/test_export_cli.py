"""`gradientflow export RUN --format tensorboard`: a stored run's rows, histograms and metrics as event files."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradientflow.cli import app
from gradientflow.records import MetricPoint, RunInfo, RunOutcome
from gradientflow.store import Store

from .conftest import Recorded, assert_same_points, expected_points

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="needs the tensorboard extra"
)
RUN = "0123456789abcdef"


@pytest.fixture
def stored(tmp_path: Path, reference: Recorded) -> Path:
    db = tmp_path / "runs.db"
    with Store(db) as store:
        store.begin_run(RunInfo(RUN, "tiny", {"model": {"depth": 3}}, seed=0))
        store.write_layer_stats(RUN, reference.frame)
        store.write_histograms(RUN, reference.histograms)
        store.write_metrics(RUN, [MetricPoint(0, "test_accuracy", 0.5), MetricPoint(4, "test_accuracy", 0.75)])
        store.finish_run(RUN, RunOutcome("finished", 4))
    return db


def test_export_writes_what_the_store_holds(tmp_path: Path, stored: Path, reference: Recorded) -> None:
    out = tmp_path / "tb"
    result = CliRunner().invoke(
        app, ["export", RUN[:6], "--format", "tensorboard", "-o", str(out), "--db", str(stored)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out / RUN}" in result.output.replace("\n", "")
    events = event_accumulator.EventAccumulator(str(out / RUN), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert [(e.step, e.value) for e in events.Scalars("test_accuracy")] == [(0, 0.5), (4, 0.75)]
    written = {}
    for name in scalars - {"test_accuracy"}:
        column, layer = name.split("/", 1)
        written[(column, layer)] = {e.step: e.value for e in events.Scalars(name)}
    assert_same_points(expected_points(reference.frame), written, rtol=1e-6)
    histogram = events.Histograms("pre_activation/sig")
    assert [e.step for e in histogram] == sorted(reference.histograms["step"].unique())


def test_an_unknown_format_is_named(tmp_path: Path, stored: Path) -> None:
    result = CliRunner().invoke(app, ["export", RUN, "--format", "tb", "--db", str(stored)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "'tb' is not one of 'csv', 'parquet', 'tensorboard'" in result.output
