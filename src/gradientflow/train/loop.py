"""The training loop: seeds, steps, evaluation, divergence detection. No printing, no SQL.

Everything it measures leaves through callbacks (`TrainCallbacks`), so the runner decides where
it goes (the store) and the CLI decides what is shown (progress bars).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from ..data import Dataset
from ..errors import TrainingError
from ..models import build
from ..probe import Probe
from ..records import MetricPoint, RunOutcome
from ..spec import ExperimentSpec, OptimSpec
from .batches import BatchOrder

__all__ = ["TrainCallbacks", "train", "make_optimizer", "evaluate"]


@dataclass
class TrainCallbacks:
    """Where the trainer's measurements go; every callback is optional."""

    on_layer_stats: Callable[[pd.DataFrame, pd.DataFrame | None], None] | None = None
    on_metrics: Callable[[list[MetricPoint]], None] | None = None
    on_progress: Callable[[int, int], None] | None = None  # (steps done, total steps)
    on_end: Callable[[RunOutcome], None] | None = None  # the run ended (after its last rows were handed over)
    keep_frames: bool = False  # keep the probe's frames in memory too (tests, demo)
    frames: list[pd.DataFrame] = field(default_factory=list)


def make_optimizer(spec: OptimSpec, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Return the optimizer the spec names (sgd | momentum | adam) over `parameters`."""
    if spec.name == "sgd":
        return torch.optim.SGD(parameters, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.name == "momentum":
        return torch.optim.SGD(parameters, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    if spec.name == "adam":
        return torch.optim.Adam(
            parameters, lr=spec.lr, betas=(spec.betas[0], spec.betas[1]), weight_decay=spec.weight_decay
        )
    raise TrainingError(f"optim.name: {spec.name!r} is not one of sgd, momentum, adam")


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Return (mean cross-entropy loss in nats, accuracy as a fraction) of `model` in eval mode."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size])
            target = y[start : start + batch_size]
            total_loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(dim=1) == target).sum())
    finally:
        model.train(was_training)
    return total_loss / len(x), correct / len(x)


def _evaluation_points(model: nn.Module, dataset: Dataset, spec: ExperimentSpec, step: int) -> list[MetricPoint]:
    size = spec.train.eval_batch_size
    train_loss, train_acc = evaluate(model, dataset.train_x, dataset.train_y, size)
    test_loss, test_acc = evaluate(model, dataset.test_x, dataset.test_y, size)
    return [
        MetricPoint(step, "train_loss", train_loss),
        MetricPoint(step, "train_accuracy", train_acc),
        MetricPoint(step, "test_loss", test_loss),
        MetricPoint(step, "test_accuracy", test_acc),
    ]


def train(
    spec: ExperimentSpec, dataset: Dataset, callbacks: TrainCallbacks | None = None, model: nn.Module | None = None
) -> RunOutcome:
    """Train `spec`'s model on `dataset` with the probe on; return how the run ended.

    Metrics are evaluated at step 0 (initialization) and after every ``train.eval_every``
    updates; ``batch_loss`` is recorded at the probe's steps. A non-finite loss ends the run with
    status ``diverged`` at that step (a NaN gradient shows up as a NaN loss one step later);
    everything measured before is kept.
    """
    callbacks = callbacks or TrainCallbacks()
    torch.manual_seed(spec.train.seed)  # anything that still uses the global RNG (dropout)
    if model is None:
        model = build(spec.model, dataset.input_shape, dataset.num_classes, spec.train.seed)
    model.train()
    optimizer = make_optimizer(spec.optim, list(model.parameters()))
    batches = BatchOrder(dataset.train_x, dataset.train_y, spec.data.batch_size, spec.train.seed)
    steps, eval_every = spec.train.steps, spec.train.eval_every

    def emit(points: list[MetricPoint]) -> None:
        if callbacks.on_metrics is not None and points:
            callbacks.on_metrics(points)

    def sink(stats: pd.DataFrame, histograms: pd.DataFrame | None) -> None:
        if callbacks.keep_frames:
            callbacks.frames.append(stats)
        if callbacks.on_layer_stats is not None:
            callbacks.on_layer_stats(stats, histograms)

    emit(_evaluation_points(model, dataset, spec, 0))
    probe_spec = spec.probe
    outcome = RunOutcome("finished", steps)
    with Probe(
        model,
        every=probe_spec.every,
        flush_every=probe_spec.flush_every,
        percentiles=tuple(probe_spec.percentiles),
        saturation_eps=probe_spec.saturation_eps,
        histograms=probe_spec.histograms,
        sink=sink,
        keep=False,
    ) as probe:
        for step in range(steps):
            x, y = batches.next()
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                probe.step()  # keep this step's statistics: they show where it blew up
                outcome = RunOutcome(
                    "diverged", step, diverged_at=step, message=f"loss became {loss_value} at step {step}"
                )
                break
            optimizer.step()
            if probe_spec.every and step % probe_spec.every == 0:
                emit([MetricPoint(step, "batch_loss", loss_value)])
            probe.step()
            done = step + 1
            if done % eval_every == 0 or done == steps:
                emit(_evaluation_points(model, dataset, spec, done))
            if callbacks.on_progress is not None:
                callbacks.on_progress(done, steps)
    if callbacks.on_end is not None:
        callbacks.on_end(outcome)
    return outcome
