"""ioffe2015-fig1: the unit observer against numpy, the drift and accuracy rules by hand, observed runs
against ordinary runs, and the quick reproduction's qualitative outcome (BN ahead, drift without BN)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from gradientflow.cli import app
from gradientflow.errors import GradientflowError
from gradientflow.models import build
from gradientflow.records import MetricPoint
from gradientflow.runner import execute_run
from gradientflow.spec import ModelSpec, expand, from_dict
from gradientflow.store import Store
from gradientflow.studies.reproductions import ReproductionContext
from gradientflow.studies.reproductions import ioffe2015 as ioffe
from gradientflow.studies.reproductions.base import run_observed


def tiny_spec(steps: int = 12, norms: tuple[str, ...] = ("none", "batch")):
    return from_dict(
        {
            "name": "tiny-ioffe",
            "model": {"depth": 3, "width": 8, "activation": "sigmoid", "init": "small_gaussian", "init_std": 0.5},
            "data": {
                "name": "synthetic_blobs",
                "batch_size": 16,
                "options": {"n_train": 200, "n_test": 64, "n_features": 12},
            },
            "optim": {"name": "sgd", "lr": 0.5},
            "train": {"steps": steps, "eval_every": 4, "eval_batch_size": 64},
            "probe": {"every": 2},
            "sweep": {"model.norm": list(norms)},
        }
    )


# ------------------------------------------------------------------------------------- observer


def test_observer_percentiles_match_numpy_on_the_unit_input_and_skip_evaluation() -> None:
    torch.manual_seed(0)
    model = build(ModelSpec(depth=3, width=8, norm="batch"), (5,), 3, seed=1)
    seen: list[torch.Tensor] = []
    model.act3.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().clone()))
    points: list[MetricPoint] = []
    remove = ioffe.observe_unit(model, points.extend, layer="act3", unit=2, every=2)
    batches = [torch.randn(16, 5) for _ in range(5)]
    for index, x in enumerate(batches):
        model(x).sum().backward()
        if index == 1:  # an evaluation pass in between must not count as a step
            model.eval()
            with torch.no_grad():
                model(torch.randn(7, 5))
            model.train()
    remove()
    model(torch.randn(16, 5))  # after removal: nothing more recorded
    training_inputs = [seen[i] for i in (0, 1, 3, 4, 5)]  # seen[2] is the evaluation pass
    steps = sorted({p.step for p in points})
    assert steps == [0, 2, 4]
    for step in steps:
        expected = np.percentile(training_inputs[step][:, 2].numpy().astype(np.float64), ioffe.PERCENTILES)
        got = [
            next(p.value for p in points if p.step == step and p.name == ioffe.unit_metric(q))
            for q in ioffe.PERCENTILES
        ]
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_observer_names_the_modules_when_the_layer_is_missing() -> None:
    model = build(ModelSpec(depth=2, width=4), (5,), 3, seed=0)
    with pytest.raises(GradientflowError, match=r"no module 'act3'.*act2"):
        ioffe.observe_unit(model, lambda points: None, layer="act3")


# --------------------------------------------------------------------------------- pure analysis


def test_window_drift_by_hand() -> None:
    steps = np.arange(0, 100)
    half = np.where(steps < 50, 0.0, 2.0)
    frame = pd.DataFrame({"p15": half - 1, "p50": half, "p85": half + 1}, index=steps)
    assert ioffe.window_drift(frame) == pytest.approx(2.0)
    widening = pd.DataFrame({"p15": -steps / 10, "p50": 0 * steps, "p85": steps / 10}, index=steps)
    # 10 windows of 10 steps: window means of steps are 4.5 ... 94.5, so the p85 mean spans 9.0
    assert ioffe.window_drift(widening) == pytest.approx(9.0)
    assert ioffe.window_drift(pd.DataFrame({"p50": [1.0] * 30}, index=range(30))) == 0.0
    assert math.isnan(ioffe.window_drift(pd.DataFrame(columns=["p50"])))


def test_accuracy_at_and_steps_to_reach() -> None:
    curve = pd.Series([0.1, 0.5, 0.92, 0.91], index=[0, 100, 200, 300])
    assert ioffe.accuracy_at(curve, 150) == 0.5
    assert ioffe.accuracy_at(curve, 300) == 0.91
    assert math.isnan(ioffe.accuracy_at(curve.iloc[1:], 50))
    assert ioffe.steps_to_reach(curve, 0.9) == 200
    assert ioffe.steps_to_reach(curve, 0.95) is None


def _measured(early: tuple[float, float], drift: tuple[float, float], steps: int = 1000) -> ioffe.Measured:
    """A synthetic setting: accuracies (no BN, BN) at every step and percentiles that move by `drift`."""
    index = np.arange(0, steps + 1, 10)

    def frame(amount: float) -> pd.DataFrame:
        ramp = amount * index / steps
        return pd.DataFrame({"p15": ramp - 1, "p50": ramp, "p85": ramp + 1}, index=index)

    accuracy = {norm: pd.Series(value, index=index) for norm, value in zip(("none", "batch"), early)}
    frames = {norm: frame(amount) for norm, amount in zip(("none", "batch"), drift)}
    setting = ioffe.Setting(0.5, 0.01, steps)
    return ioffe.Measured(
        setting, {"none": "a", "batch": "b"}, {"none": "finished", "batch": "finished"}, accuracy, frames, frames
    )


def test_compare_decides_from_the_numbers() -> None:
    agree = ioffe.compare(_measured((0.5, 0.9), (3.0, 0.2)), [_measured((0.5, 0.9), (3.0, 0.2))])
    assert [c.agrees for c in agree] == [True, True, True, True, True, True]
    reverse = ioffe.compare(_measured((0.95, 0.6), (0.2, 3.0)), [_measured((0.9, 0.6), (3.0, 0.2))])
    assert [c.agrees for c in reverse] == [False, False, False, False, False, False]
    assert "BN 0.600, no BN 0.950" in reverse[0].ours
    assert "BN never, no BN 0" in reverse[1].ours


# ----------------------------------------------------------------------------- observed runs


def test_observed_run_stores_the_ordinary_run_plus_unit_metrics(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run = expand(tiny_spec(norms=("batch",)))[0]
    execute_run(run, tmp_path / "plain.db")
    observer = lambda model, emit: ioffe.observe_unit(model, emit, every=3)  # noqa: E731 (in-process only)
    execute_run(run, tmp_path / "observed.db", observe=observer)
    with (
        Store(tmp_path / "plain.db", readonly=True) as plain,
        Store(tmp_path / "observed.db", readonly=True) as observed,
    ):
        plain_metrics, observed_metrics = plain.metrics_frame(), observed.metrics_frame()
        pd.testing.assert_frame_equal(plain.layer_stats_frame(), observed.layer_stats_frame())
        assert observed.run(run.run_id)["status"] == "finished"
    unit = observed_metrics["name"].str.startswith("unit_input_p")
    pd.testing.assert_frame_equal(plain_metrics.reset_index(drop=True), observed_metrics[~unit].reset_index(drop=True))
    assert sorted(set(observed_metrics[unit]["step"])) == [0, 3, 6, 9]


def test_run_observed_skips_stored_runs_and_measure_refuses_runs_without_the_observer(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    runs = expand(tiny_spec(steps=4))
    context = ReproductionContext(name="ioffe2015-fig1", output=tmp_path, db=tmp_path / "runs.db", workers=1)
    observer = lambda model, emit: ioffe.observe_unit(model, emit, every=2)  # noqa: E731
    first = run_observed(runs, context, observer)
    assert sorted(first) == sorted(r.run_id for r in runs) and all(o.status == "finished" for o in first.values())
    assert run_observed(runs, context, observer) == {}
    execute_run(runs[0], tmp_path / "other.db")
    execute_run(runs[1], tmp_path / "other.db")
    with (
        Store(tmp_path / "other.db", readonly=True) as store,
        pytest.raises(GradientflowError, match="without this reproduction's observer.*fresh --db"),
    ):
        ioffe.measure(ioffe.Setting(0.5, 0.5, 4), runs, store)


# ------------------------------------------------------------------------------ the quick variant


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("ioffe-quick")
    result = CliRunner().invoke(
        app, ["reproduce", "ioffe2015-fig1", "--quick", "-o", str(output), "-w", "1"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 0, result.output
    return output


@pytest.mark.slow
def test_quick_bn_is_ahead_at_a_fixed_step_and_the_unit_input_drifts_more_without_bn(quick: Path) -> None:
    budget = ioffe.BUDGETS["quick"]
    runs = {run.spec.model.norm: run.run_id for run in expand(ioffe.setting_spec(budget.main, budget, "mnist5k"))}
    with Store(quick / "ioffe2015-fig1" / "runs.db", readonly=True) as store:
        metrics = store.metrics_frame(list(runs.values()))
    accuracy = {norm: ioffe.accuracy_curve(metrics, run_id) for norm, run_id in runs.items()}
    step = budget.main.steps // 5
    assert ioffe.accuracy_at(accuracy["batch"], step) > ioffe.accuracy_at(accuracy["none"], step) + 0.2
    drift = {norm: ioffe.window_drift(ioffe.unit_percentiles(metrics, run_id)) for norm, run_id in runs.items()}
    assert drift["none"] > 2 * drift["batch"]


@pytest.mark.slow
def test_quick_page_links_existing_pngs_and_counts_the_outcomes(quick: Path) -> None:
    page = (quick / "ioffe2015-fig1.md").read_text()
    links = [line[line.index("(") + 1 : -1] for line in page.splitlines() if line.startswith("![")]
    assert len(links) == 3
    for link in links:
        assert (quick / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line for line in page.splitlines() if line.startswith("| (")]
    agreed = sum("| agrees |" in row for row in rows)
    assert f"**{agreed} of {len(rows)} comparisons agree" in page
    assert f"Made by `gradientflow reproduce ioffe2015-fig1 --quick -o {quick} --workers 1` in" in page
    assert "Data: mnist5k" in page
