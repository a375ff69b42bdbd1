"""The pure verdict rules on hand-made probe frames: thresholds, persistence, time order, groups, JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from gradientflow.analysis.verdicts import THRESHOLDS, Diagnosis, Thresholds, diagnose_frame, layer_frame
from gradientflow.errors import ModelError


def frame(
    grads: list[list[float]],
    updates: list[list[float]] | None = None,
    activation: str = "relu",
    saturated: float = 0.5,
    dead: float = 0.0,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Probe-like rows: per step, layers fc{i} (weight) then act{i} (activation), i = 1..len(grads[0])."""
    rows = []
    for step, step_grads in enumerate(grads):
        for i, grad in enumerate(step_grads):
            name = names[i] if names else f"act{i + 1}"
            update = updates[step][i] if updates else 1e-3
            rows.append(
                {
                    "step": step,
                    "layer": f"fc{i + 1}",
                    "order": 2 * i,
                    "kind": "weight",
                    "module_type": "Linear",
                    "activation": None,
                    "update_ratio": update,
                }
            )
            rows.append(
                {
                    "step": step,
                    "layer": name,
                    "order": 2 * i + 1,
                    "kind": "tap" if name.endswith(":stream") else "activation",
                    "module_type": "ReLU",
                    "activation": "linear" if name.endswith(":stream") else activation,
                    "grad_rms": grad,
                    "saturated_frac": saturated,
                    "dead_units_frac": dead,
                    "pre_mean": 0.0,
                    "pre_std": 1.0,
                    "nonfinite_count": 0.0,
                    "update_ratio": np.nan,
                }
            )
    return pd.DataFrame(rows)


def test_gain_and_relative_gradient_are_ratios_at_the_same_step() -> None:
    table = layer_frame(frame([[1e-3, 1e-2, 1e-1, 1.0]] * 2))
    step0 = table[table["step"] == 0].set_index("layer")
    assert step0["relative_grad"].tolist() == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])
    assert step0["gain"].tolist()[:3] == pytest.approx([0.1, 0.1, 0.1]) and math.isnan(step0.at["act4", "gain"])
    assert step0.at["act2", "weights"] == "fc2"


def test_vanishing_first_layer_is_the_first_below_the_threshold_going_back() -> None:
    diagnosis = diagnose_frame(frame([[1e-4, 1e-3, 0.02, 0.2, 1.0]] * 3))
    assert diagnosis.verdict == "vanishing"
    assert diagnosis.problem.layer == "act2" and diagnosis.problem.layers == ("act1", "act2")
    assert diagnosis.table["verdict"].tolist() == ["vanishing", "vanishing", "healthy", "healthy", "healthy"]


def test_thresholds_are_relative_so_the_loss_scale_cancels() -> None:
    grads = [[1e-4, 1e-3, 0.02, 0.2, 1.0]] * 3
    scaled = [[g * 1e6 for g in step] for step in grads]
    assert (
        diagnose_frame(frame(scaled)).table["verdict"].tolist()
        == diagnose_frame(frame(grads)).table["verdict"].tolist()
    )


def test_exploding_just_above_and_healthy_just_below_the_threshold() -> None:
    ratio = THRESHOLDS.exploding_ratio
    assert diagnose_frame(frame([[ratio * 1.01, 1.0]] * 3)).verdict == "exploding"
    assert diagnose_frame(frame([[ratio * 0.99, 1.0]] * 3)).verdict == "healthy"


def test_one_noisy_step_does_not_count_but_a_persistent_problem_does() -> None:
    healthy, vanished = [1.0, 1.0, 1.0], [1e-3, 1.0, 1.0]
    assert diagnose_frame(frame([healthy, vanished, healthy, healthy])).verdict == "healthy"
    late = diagnose_frame(frame([healthy, healthy, vanished, vanished, healthy]))
    assert late.verdict == "vanishing" and late.problem.step == 2 and late.window == (0, 4)
    # judged over the first and the last three records: healthy at the start, vanishing at the end
    assert (late.start, late.start_steps, late.end, late.end_steps) == ("healthy", (0, 2), "vanishing", (2, 4))
    assert late.problem.at_end


def test_a_problem_on_the_last_record_alone_is_not_confirmed() -> None:
    assert diagnose_frame(frame([[1.0, 1.0]] * 4 + [[1e-3, 1.0]])).verdict == "healthy"
    assert diagnose_frame(frame([[1.0, 1.0]] * 3 + [[1e-3, 1.0]] * 2)).verdict == "vanishing"


def test_a_single_update_larger_than_the_weight_is_unstable_at_once() -> None:
    updates = [[1e-3] * 3, [2.0, 1e-3, 1e-3], [1e-3] * 3, [1e-3] * 3]
    diagnosis = diagnose_frame(frame([[1.0] * 3] * 4, updates))
    assert diagnosis.verdict == "unstable updates" and diagnosis.problem.step == 1 and diagnosis.problem.layer == "act1"


def test_within_a_step_the_gradient_comes_before_the_update() -> None:
    # exploding gradient and huge updates both at step 0: the gradient explains the updates
    updates = [[5.0, 5.0, 1e-3]] * 3
    diagnosis = diagnose_frame(frame([[1e3, 30.0, 1.0]] * 3, updates))
    assert diagnosis.verdict == "exploding"
    assert [p.verdict for p in diagnosis.others] == ["unstable updates"]
    # huge updates at step 0, explosion only from step 1: the update came first
    later = diagnose_frame(frame([[1.0, 1.0, 1.0]] + [[1e3, 30.0, 1.0]] * 3, [[5.0, 5.0, 1e-3]] * 4))
    assert later.verdict == "unstable updates"


def test_saturation_counts_only_for_bounded_activations_and_dead_only_for_relu_like() -> None:
    assert diagnose_frame(frame([[1.0] * 3] * 3, activation="relu", saturated=0.9)).verdict == "healthy"
    assert diagnose_frame(frame([[1.0] * 3] * 3, activation="tanh", saturated=0.9)).verdict == "saturated"
    assert diagnose_frame(frame([[1.0] * 3] * 3, activation="relu", dead=0.6)).verdict == "dead"
    assert diagnose_frame(frame([[1.0] * 3] * 3, activation="sigmoid", dead=0.6, saturated=0.0)).verdict == "healthy"


def test_stream_rows_form_their_own_group() -> None:
    names = ["block1.act", "block1:stream", "block2.act", "block2:stream"]
    diagnosis = diagnose_frame(frame([[1e-4, 1.0, 1.0, 1.0]] * 3, names=names))
    table = diagnosis.table.set_index("layer")
    assert table.at["block1.act", "role"] == "branch" and table.at["block1:stream", "role"] == "stream"
    assert table.at["block1.act", "relative_grad_init"] == pytest.approx(1e-4)  # against block2.act, not the stream
    assert diagnosis.problem.layer == "block1.act"


def test_custom_thresholds_change_the_verdict() -> None:
    grads = [[0.05, 1.0]] * 3
    assert diagnose_frame(frame(grads)).verdict == "healthy"
    assert diagnose_frame(frame(grads), Thresholds(vanishing_ratio=0.1)).verdict == "vanishing"


def test_diverged_run_without_an_earlier_sign_is_unstable() -> None:
    diagnosis = diagnose_frame(frame([[1.0, 1.0]] * 3), diverged_at=2)
    assert diagnosis.verdict == "unstable updates" and diagnosis.problem.step == 1
    assert diagnosis.problem.evidence["diverged_at"] == 2


def test_json_round_trip() -> None:
    diagnosis = diagnose_frame(frame([[1e-4, 1e-3, 0.02, 0.2, 1.0]] * 3, [[1e-3, 1e-3, 1e-3, 1e-3, 2.0]] * 3))
    text = json.dumps(diagnosis.to_dict(), allow_nan=False)
    back = Diagnosis.from_dict(json.loads(text))
    assert back.to_dict() == diagnosis.to_dict()
    pd.testing.assert_frame_equal(back.table, diagnosis.table, check_dtype=False)


def test_a_model_without_activations_is_a_clear_error() -> None:
    weights_only = frame([[1.0]])
    with pytest.raises(ModelError, match="gradientflow.tap"):
        diagnose_frame(weights_only[weights_only["kind"] == "weight"])


def test_a_diverged_steps_infinities_are_written_as_null() -> None:
    rows = frame([[1.0, 1.0]] * 3)
    rows.loc[(rows["step"] == 2) & (rows["layer"] == "act1"), ["pre_mean", "grad_rms"]] = [-np.inf, np.inf]
    diagnosis = diagnose_frame(rows, diverged_at=2)
    document = json.loads(json.dumps(diagnosis.to_dict(), allow_nan=False))
    act1 = document["layers"][0]
    assert act1["pre_mean_end"] is None and act1["grad_rms_end"] is None and act1["pre_mean_init"] == 0.0


def test_a_stream_tap_inside_another_block_is_dropped() -> None:
    # GPT-2: the MLP inside a block returns its input's shape too, but the stream is the block's output
    names = ["h0.mlp.act_fn", "h0.mlp:stream", "h0:stream", "h1.mlp.act_fn", "h1.mlp:stream", "h1:stream"]
    table = diagnose_frame(frame([[1.0] * 6] * 3, names=names)).table
    assert list(table["layer"]) == ["h0.mlp.act_fn", "h0:stream", "h1.mlp.act_fn", "h1:stream"]
    assert list(table["role"]) == ["branch", "stream", "branch", "stream"]
    assert table.set_index("layer").at["h1:stream", "weights"] == "fc5, fc6"  # the dropped tap's weights move on
