"""The training loop: determinism, divergence, and when it evaluates."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from pandas.testing import assert_frame_equal

from gradientflow.models import build
from gradientflow.records import MetricPoint, RunOutcome
from gradientflow.runner import load_run_dataset
from gradientflow.spec import ExperimentSpec
from gradientflow.train import TrainCallbacks, evaluate, train

from .helpers import tiny_spec

EVAL_NAMES = {"train_loss", "train_accuracy", "test_loss", "test_accuracy"}


def run(
    spec: ExperimentSpec, model: torch.nn.Module | None = None
) -> tuple[RunOutcome, pd.DataFrame, list[MetricPoint], list[int]]:
    """Train `spec`; return (outcome, every probe frame concatenated, metric points, progress calls)."""
    metrics: list[MetricPoint] = []
    progress: list[int] = []
    callbacks = TrainCallbacks(
        on_metrics=metrics.extend, on_progress=lambda done, total: progress.append(done), keep_frames=True
    )
    outcome = train(spec, load_run_dataset(spec), callbacks, model=model)
    frames = pd.concat(callbacks.frames, ignore_index=True) if callbacks.frames else pd.DataFrame()
    return outcome, frames, metrics, progress


def eval_steps(metrics: list[MetricPoint]) -> dict[int, set[str]]:
    steps: dict[int, set[str]] = {}
    for point in metrics:
        if point.name in EVAL_NAMES:
            steps.setdefault(point.step, set()).add(point.name)
    return steps


# ---------------------------------------------------------------------------------- determinism


def test_same_spec_and_seed_give_identical_frames_and_metrics() -> None:
    spec = tiny_spec(train={"seed": 3})
    first = run(spec)
    torch.rand(1000)  # the global RNG moves between the runs: train must reseed what it uses
    torch.manual_seed(12345)
    second = run(spec)
    assert first[0] == second[0] == RunOutcome("finished", 40)
    assert len(first[1]) > 0
    assert_frame_equal(first[1], second[1], check_exact=True)
    assert first[2] == second[2]  # MetricPoint equality: exact floats, same order


def test_another_seed_gives_other_numbers() -> None:
    _, frames0, metrics0, _ = run(tiny_spec(train={"seed": 0}))
    _, frames1, metrics1, _ = run(tiny_spec(train={"seed": 1}))
    # Same shape of record (same layers, same steps) ...
    assert_frame_equal(frames0[["step", "layer", "kind"]], frames1[["step", "layer", "kind"]])
    # ... but other numbers: the init, the data and the batch order all come from the seed.
    for column in ("grad_rms", "pre_mean", "weight_norm"):
        a, b = frames0[column].to_numpy(), frames1[column].to_numpy()
        both = ~(pd.isna(a) | pd.isna(b))
        assert both.any()
        assert (a[both] != b[both]).mean() > 0.9, column
    assert [p.value for p in metrics0] != [p.value for p in metrics1]


def test_model_passed_in_is_the_one_trained_and_seed_fixes_its_init() -> None:
    spec = tiny_spec(train={"seed": 2})
    data = load_run_dataset(spec)
    model = build(spec.model, data.input_shape, data.num_classes, spec.train.seed)
    _, _, given_metrics, _ = run(spec, model=model)
    _, _, own_metrics, _ = run(spec)
    assert given_metrics == own_metrics  # build(seed) is the model train builds itself
    # The final evaluation describes the model after the last update, not an earlier one.
    test_loss, test_accuracy = evaluate(model, data.test_x, data.test_y, spec.train.eval_batch_size)
    final = {p.name: p.value for p in given_metrics if p.step == spec.train.steps}
    assert final["test_loss"] == test_loss
    assert final["test_accuracy"] == test_accuracy


# ----------------------------------------------------------------------------------- divergence


def diverging_spec(every: int = 1) -> ExperimentSpec:
    # ReLU without normalization and lr 1e3: the weights overflow within a few steps (NaN loss).
    return tiny_spec(model={"activation": "relu", "norm": "none"}, optim={"lr": 1e3}, probe={"every": every})


def test_non_finite_loss_ends_the_run_as_diverged_at_that_step() -> None:
    spec = diverging_spec()
    outcome, frames, metrics, progress = run(spec)
    assert outcome.status == "diverged"
    assert outcome.diverged_at is not None
    at = outcome.diverged_at
    assert 1 < at < spec.train.steps  # some steps trained fine before it
    assert outcome.steps_done == at
    assert f"step {at}" in (outcome.message or "")
    # Everything recorded before the divergence reached the callbacks ...
    recorded = set(frames["step"].unique().tolist())
    assert set(range(at)) <= recorded
    # ... and nothing after it: the loop stopped there (the diverged step itself may be kept).
    assert max(recorded) <= at
    assert progress == list(range(1, at + 1))
    step0 = frames[(frames["step"] == 0) & (frames["kind"] == "activation")]
    assert len(step0) == spec.model.depth and step0["grad_rms"].map(math.isfinite).all()
    batch_losses = [p for p in metrics if p.name == "batch_loss"]
    assert [p.step for p in batch_losses] == list(range(at))
    assert all(math.isfinite(p.value) for p in batch_losses)
    assert eval_steps(metrics)[0] == EVAL_NAMES  # the evaluation at init is kept
    assert max(p.step for p in metrics) < at


def test_divergence_is_reported_also_when_the_probe_skips_that_step() -> None:
    full = run(diverging_spec(every=1))[0]
    outcome, frames, _, _ = run(diverging_spec(every=3))
    assert outcome == full  # the probe schedule does not change training
    assert set(frames["step"].unique().tolist()) == {s for s in range(outcome.diverged_at + 1) if s % 3 == 0}


# ------------------------------------------------------------------------------ evaluation points


@pytest.mark.parametrize(
    ("steps", "eval_every", "expected"),
    [
        (40, 15, [0, 15, 30, 40]),  # the end is evaluated although 40 is no multiple of 15
        (40, 20, [0, 20, 40]),  # and only once when it is
        (10, 100, [0, 10]),  # eval_every beyond the run: init and end only
    ],
)
def test_metrics_at_init_every_eval_every_and_at_the_end(steps: int, eval_every: int, expected: list[int]) -> None:
    outcome, _, metrics, _ = run(tiny_spec(train={"steps": steps, "eval_every": eval_every}))
    assert outcome.status == "finished" and outcome.steps_done == steps
    found = eval_steps(metrics)
    assert sorted(found) == expected
    assert all(names == EVAL_NAMES for names in found.values())
    evaluations = [(p.step, p.name) for p in metrics if p.name in EVAL_NAMES]
    assert len(evaluations) == len(set(evaluations)) == 4 * len(expected)
    accuracies = [p.value for p in metrics if p.name.endswith("accuracy")]
    assert all(0.0 <= a <= 1.0 for a in accuracies)


def test_batch_loss_recorded_at_the_probe_steps() -> None:
    _, frames, metrics, _ = run(tiny_spec(train={"steps": 23}, probe={"every": 5}))
    loss_steps = [p.step for p in metrics if p.name == "batch_loss"]
    assert loss_steps == [0, 5, 10, 15, 20]
    assert sorted(frames["step"].unique().tolist()) == loss_steps


def test_initial_evaluation_matches_an_untrained_model() -> None:
    spec = tiny_spec(train={"seed": 4})
    data = load_run_dataset(spec)
    untrained = build(spec.model, data.input_shape, data.num_classes, spec.train.seed)
    loss, accuracy = evaluate(untrained, data.test_x, data.test_y, spec.train.eval_batch_size)
    _, _, metrics, _ = run(spec)
    at_init = {p.name: p.value for p in metrics if p.step == 0 and p.name in EVAL_NAMES}
    assert at_init["test_loss"] == loss and at_init["test_accuracy"] == accuracy
    assert math.isclose(loss, math.log(data.num_classes), rel_tol=0.2)  # near chance at init
