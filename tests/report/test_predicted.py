"""Predicted grad_rms profiles: the spec -> theory mapping (numbers by hand and from the theory
functions) and the dashed lines the report draws from it (figure data, no browser)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from gradientflow.analysis.predictions import layer_sigma_w2, predict_profile, predict_profiles
from gradientflow.report import ReportData, build_panels, gradient_profile_panel, report_html
from gradientflow.theory import gradient_rms_profile


def spec(**model: object) -> dict:
    data = model.pop("data", {"name": "mnist5k", "batch_size": 32})
    return {
        "model": {
            "arch": "mlp",
            "depth": 4,
            "width": 100,
            "activation": "relu",
            "norm": "none",
            "init": "pytorch_default",
            **model,
        },
        "data": data,
    }


def test_plain_relu_profile_is_the_hand_computed_power_of_sigma_w2_over_2() -> None:
    # relu: chi = sigma_w2 / 2 whatever q; pytorch_default has sigma_w2 = 1/3, so each layer down
    # multiplies grad_rms by sqrt(1/6); he_normal (sigma_w2 = 2) is critical: flat.
    relative = predict_profile(spec()).relative
    assert relative == pytest.approx([math.sqrt(1 / 6) ** k for k in (3, 2, 1, 0)], rel=1e-9)
    assert predict_profile(spec(init="he_normal")).relative == pytest.approx([1.0] * 4, rel=1e-9)


def test_weight_scale_enters_as_its_square() -> None:
    # linear, lecun_normal: sigma_w2 = 1, times a^2 = 4: the gradient doubles per layer down.
    relative = predict_profile(spec(activation="linear", init="lecun_normal", weight_scale=2.0)).relative
    assert relative == pytest.approx([8.0, 4.0, 2.0, 1.0], rel=1e-9)


def test_first_layer_sigma_w2_uses_the_input_size() -> None:
    assert layer_sigma_w2(spec(init="small_gaussian", init_std=0.1)) == pytest.approx([0.01 * 784, 1.0, 1.0, 1.0])
    assert layer_sigma_w2(spec(init="glorot_uniform")) == pytest.approx([2 * 784 / 884, 1.0, 1.0, 1.0])
    synthetic = {"name": "synthetic_blobs", "batch_size": 20, "options": {"n_features": 16}}
    assert layer_sigma_w2(spec(init="small_gaussian", init_std=0.5, data=synthetic))[0] == pytest.approx(0.25 * 16)


def test_sigmoid_profile_matches_the_theory_function_with_the_data_input_scale() -> None:
    expected = gradient_rms_profile("sigmoid", [1 / 3] * 4, 0.0, 4, input_variance=0.1125)
    assert predict_profile(spec(activation="sigmoid")).relative == pytest.approx(list(expected), rel=1e-12)
    assert expected[0] < 0.1  # sigmoid's slope <= 1/4: a vanishing profile, not a flat one


def test_bn_profiles_use_lambda_of_the_batch_size() -> None:
    # BN-linear: (B-2)/(B-3) = 6/5 at B = 8 (closed form by hand); BN-ReLU at B = 32 against the
    # published 1.522 (Yang et al. 2019's table, a second source).
    linear = predict_profile(spec(activation="linear", norm="batch", data={"name": "mnist5k", "batch_size": 8}))
    assert linear.relative == pytest.approx([1.2 ** (k / 2) for k in (3, 2, 1, 0)], rel=1e-12)
    relu = predict_profile(spec(norm="batch", init="small_gaussian", init_std=3.0))  # BN: init irrelevant
    assert relu.relative[0] == pytest.approx(1.522**1.5, rel=2e-3)
    assert "B=32" in relu.theory


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"arch": "cnn"}, "fully connected"),
        ({"norm": "layer"}, "'layer' normalization"),
        ({"norm": "batch", "norm_position": "after_activation"}, "BN before the activation"),
        ({"norm": "batch", "data": {"name": "mnist5k", "batch_size": 2}}, "batch size >= 4"),
        ({"bias_init": 0.5}, "constant non-zero bias"),
    ],
)
def test_uncovered_specs_get_a_reason_and_no_profile(change: dict, reason: str) -> None:
    prediction = predict_profile(spec(**change))
    assert prediction.relative is None
    assert reason in prediction.reason


def test_report_draws_one_dashed_line_per_run_anchored_at_the_measured_last_layer(tiny_data: ReportData) -> None:
    profile = build_panels(tiny_data)[0]
    dashed = [t for t in profile.figure.data if t.line.dash == "dash"]
    assert len(profile.figure.data) == 3 * 2 + 2 and len(dashed) == 2
    predictions = predict_profiles(tiny_data.runs)
    layers = tiny_data.layers
    for run_id, trace in zip(tiny_data.run_ids, dashed):
        measured = layers[(layers["run_id"] == run_id) & (layers["step"] == 0)]["grad_rms"].to_numpy()
        expected = np.asarray(predictions[run_id].relative) * measured[-1]
        assert np.allclose(np.asarray(trace.y, dtype=float), expected, rtol=1e-12)
        assert trace.xaxis == "x"  # the first subplot: step 0, initialization
    assert "Dashed: mean-field prediction at initialization" in profile.caption


def test_report_says_which_runs_have_no_prediction_and_why(tiny_data: ReportData) -> None:
    runs = tiny_data.runs.copy()
    first = tiny_data.run_ids[0]
    runs["spec"] = [
        {**s, "model": {**s["model"], "norm": "group"}} if r == first else s
        for r, s in zip(runs["run_id"], runs["spec"])
    ]
    data = dataclasses.replace(tiny_data, runs=runs)
    profile = build_panels(data)[0]
    assert sum(t.line.dash == "dash" for t in profile.figure.data) == 1
    assert (
        f"No prediction for {data.labels[first]}: no mean-field theory here for 'group' normalization."
        in profile.caption
    )


def test_an_empty_mapping_draws_no_predictions_and_the_page_names_the_theory_traces(tiny_data: ReportData) -> None:
    assert len(build_panels(tiny_data, predicted={})[0].figure.data) == 3 * 2
    assert len(gradient_profile_panel(tiny_data).figure.data) == 3 * 2  # the panel alone computes nothing
    assert report_html(tiny_data).count('"name":"theory: ') == 2
