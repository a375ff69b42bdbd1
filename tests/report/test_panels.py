"""Each panel of a two-run report: trace counts, titles, axis labels with units, captions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradientflow.report import (
    MAX_SIDE_BY_SIDE,
    ReportData,
    build_panels,
    gradient_heatmap_panel,
    gradient_profile_panel,
    metrics_panel,
    percentile_panel,
    saturation_panel,
)

LAYERS = 3  # the tiny spec's hidden layers, each ending in a sigmoid


def axis_titles(figure) -> list[str]:  # type: ignore[no-untyped-def]
    layout = figure.layout
    return [
        axis.title.text
        for name in dir(layout)
        if name.startswith(("xaxis", "yaxis")) and (axis := getattr(layout, name)) is not None and axis.title.text
    ]


def test_profile_draws_one_line_per_run_at_first_middle_and_last_step(tiny_data: ReportData) -> None:
    panel = gradient_profile_panel(tiny_data)
    assert len(panel.figure.data) == 3 * 2  # steps 0, 20, 35 x two runs
    assert [a.text for a in panel.figure.layout.annotations] == ["step 0 (first recorded)", "step 20", "step 35"]
    for trace in panel.figure.data:
        assert list(trace.x) == ["act1", "act2", "act3"]
        assert all(y is not None and y > 0 for y in trace.y)
    assert panel.figure.layout.yaxis.type == "log"
    assert "grad_rms (loss units per pre-activation unit, log)" in axis_titles(panel.figure)


def test_profile_values_are_the_stored_grad_rms(tiny_data: ReportData) -> None:
    panel = gradient_profile_panel(tiny_data)
    run_id = tiny_data.run_ids[0]
    stored = tiny_data.layers[(tiny_data.layers["run_id"] == run_id) & (tiny_data.layers["step"] == 0)]
    assert list(panel.figure.data[0].y) == pytest.approx(list(stored["grad_rms"]))


def test_profile_adds_a_dashed_prediction_per_run_given_one(tiny_data: ReportData) -> None:
    run_id = tiny_data.run_ids[0]
    panel = gradient_profile_panel(tiny_data, predicted={run_id: [0.25, 0.5, 1.0], "elsewhere": [1.0]})
    assert len(panel.figure.data) == 3 * 2 + 1
    theory = panel.figure.data[-1]
    assert theory.line.dash == "dash"
    last = float(theory.y[-1])
    assert [float(y) / last for y in theory.y] == pytest.approx([0.25, 0.5, 1.0])
    assert "Dashed" in panel.caption


def test_heatmap_has_one_heatmap_per_run_on_a_shared_log_scale(tiny_data: ReportData) -> None:
    panel = gradient_heatmap_panel(tiny_data)
    assert [t.type for t in panel.figure.data] == ["heatmap", "heatmap"]
    first = panel.figure.data[0]
    assert list(first.y) == ["act1", "act2", "act3"]
    assert list(first.x) == [0, 5, 10, 15, 20, 25, 30, 35]
    stored = tiny_data.layers[(tiny_data.layers["run_id"] == tiny_data.run_ids[0]) & (tiny_data.layers["step"] == 0)]
    assert [row[0] for row in first.z] == pytest.approx(list(np.log10(stored["grad_rms"])))
    assert all(t.coloraxis == "coloraxis" for t in panel.figure.data)
    assert "step (optimizer updates)" in axis_titles(panel.figure)


def test_percentiles_of_the_last_hidden_layer_one_subplot_per_run(tiny_data: ReportData) -> None:
    panel = percentile_panel(tiny_data)
    assert len(panel.figure.data) == 3 * 2
    assert {t.name for t in panel.figure.data} == {"15th percentile", "50th percentile", "85th percentile"}
    assert all(a.text.endswith(": act3") for a in panel.figure.layout.annotations)
    p15, p50, p85 = (np.asarray(t.y, dtype=float) for t in panel.figure.data[:3])
    assert np.all(p15 <= p50) and np.all(p50 <= p85)
    assert len(p50) == 8  # every probed step


def test_saturation_draws_both_fractions_per_layer_and_run(tiny_data: ReportData) -> None:
    panel = saturation_panel(tiny_data)
    assert len(panel.figure.data) == 2 * 2 * LAYERS
    for trace in panel.figure.data:
        values = [v for v in trace.y if v is not None]
        assert values and all(0.0 <= v <= 1.0 for v in values)
    titles = axis_titles(panel.figure)
    assert "fraction of elements" in titles and "fraction of units" in titles
    assert sum(bool(t.showlegend) for t in panel.figure.data) == LAYERS  # one legend entry per layer


def test_metrics_draw_train_and_test_loss_and_accuracy_per_run(tiny_data: ReportData) -> None:
    panel = metrics_panel(tiny_data)
    assert len(panel.figure.data) == 2 * 4
    names = [t.name for t in panel.figure.data]
    assert sum(n.startswith("train:") for n in names) == 4 and sum(n.startswith("test:") for n in names) == 4
    assert {t.line.dash for t in panel.figure.data} == {"solid", "dash"}
    assert "accuracy (fraction correct)" in axis_titles(panel.figure)


def test_every_figure_has_a_title_axis_labels_and_a_one_line_caption(tiny_data: ReportData) -> None:
    panels = build_panels(tiny_data)
    assert [p.key for p in panels] == ["profile", "heatmap", "percentiles", "saturation", "metrics"]
    for panel in panels:
        assert panel.figure.layout.title.text, panel.key
        titles = axis_titles(panel.figure)
        assert any("step" in t or "layer" in t for t in titles), (panel.key, titles)
        assert any("(" in t for t in titles), (panel.key, titles)  # a unit in parentheses
        assert panel.caption and "\n" not in panel.caption


def _synthetic_data(runs: int, steps: int = 3, layers: int = 2) -> ReportData:
    ids = [f"run{i:02d}" for i in range(runs)]
    frame = pd.DataFrame({"run_id": ids, "name": "many", "status": "finished", "steps_done": steps,
                          "diverged_at": pd.array([None] * runs, dtype="Int64"), "spec.train.seed": range(runs)})  # fmt: skip
    rows = [
        {"run_id": r, "step": s, "layer": f"act{k + 1}", "order": k, "kind": "activation",
         "grad_rms": 10.0 ** (k - 3), "pre_p15": -1.0, "pre_p50": 0.0, "pre_p85": 1.0,
         "saturated_frac": 0.0, "dead_units_frac": 0.0}
        for r in ids for s in range(steps) for k in range(layers)
    ]  # fmt: skip
    metrics = pd.DataFrame(columns=["run_id", "step", "name", "value"])
    return ReportData(frame, ["train.seed"], {r: f"seed={i}" for i, r in enumerate(ids)}, pd.DataFrame(rows), metrics)


def test_more_runs_than_fit_side_by_side_are_cut_with_a_note() -> None:
    data = _synthetic_data(MAX_SIDE_BY_SIDE + 2)
    heatmap = gradient_heatmap_panel(data)
    assert len(heatmap.figure.data) == MAX_SIDE_BY_SIDE
    assert f"first {MAX_SIDE_BY_SIDE} of {MAX_SIDE_BY_SIDE + 2} runs" in heatmap.caption
    assert len(percentile_panel(data).figure.data) == 3 * MAX_SIDE_BY_SIDE
    # Overlaid panels keep every run.
    assert len(gradient_profile_panel(data).figure.data) == 3 * (MAX_SIDE_BY_SIDE + 2)


def test_zero_and_nonfinite_gradients_leave_gaps_on_the_log_axis() -> None:
    data = _synthetic_data(1)
    layers = data.layers.copy()
    layers.loc[0, "grad_rms"] = 0.0
    layers.loc[1, "grad_rms"] = math.inf
    data = ReportData(data.runs, [], data.labels, layers, data.metrics)
    profile = gradient_profile_panel(data)
    assert list(profile.figure.data[0].y) == [None, None]
    heatmap = gradient_heatmap_panel(data)
    assert heatmap.figure.data[0].z[0][0] is None and heatmap.figure.data[0].z[1][0] is None
