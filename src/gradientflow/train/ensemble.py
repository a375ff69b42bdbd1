"""Many runs as one vectorized group: same-shaped MLPs trained together, each member its own run.

Members may differ in what does not change the network's shapes: seed (hence initial weights and
data order), learning rate, momentum, weight decay, initialization (scheme, scale, std, bias).
Everything else (architecture, data, steps, probe settings, optimizer kind) must be equal; see
`group_key`. Each member gets the callbacks, metrics, probe rows and outcome a lone `train` of its
spec would give, to float32 rounding: the matrix products are batched, so they sum in another order.
A member whose loss becomes non-finite ends as ``diverged`` alone; the others go on without it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from ..data import Dataset
from ..errors import TrainingError
from ..models import build
from ..models.ensemble import EnsembleMLP, stack_members
from ..probe.activations import activation_name, rule_for_module
from ..probe.buffer import RowInfo
from ..probe.ensemble import EnsembleProbe, EnsembleWeightTracker, norm_raw
from ..records import MetricPoint, RunOutcome
from ..spec import ExperimentSpec
from .batches import EnsembleBatches
from .ensemble_sgd import EnsembleSGD
from .loop import TrainCallbacks

__all__ = ["group_key", "train_group", "GroupTraining", "evaluate_members", "GROUPABLE_OPTIMIZERS", "GROUPABLE_NORMS"]

GROUPABLE_OPTIMIZERS = ("sgd", "momentum")  # Adam runs train one by one
GROUPABLE_NORMS = ("none", "batch")  # layer/group/rms norms train one by one
# ModelSpec fields that change a network's structure; the others only change initial values
_STRUCTURE = {"arch", "depth", "width", "activation", "norm", "norm_position", "bias"}


def group_key(spec: ExperimentSpec) -> str | None:
    """Return a key equal for specs that can train in one vectorized group, or None when `spec` cannot.

    Groupable: MLPs with norm none or batch, optimizer sgd or momentum, no histograms. Runs with
    the same key differ only in seed, lr, momentum, weight decay and initialization.
    """
    model = spec.model
    if (
        model.arch != "mlp"
        or model.norm not in GROUPABLE_NORMS
        or spec.optim.name not in GROUPABLE_OPTIMIZERS
        or spec.probe.histograms
    ):
        return None
    shared = {
        "model": model.model_dump(mode="json", include=_STRUCTURE),
        "data": spec.data.model_dump(mode="json"),
        "optim": spec.optim.name,
        "train": spec.train.model_dump(mode="json", exclude={"seed"}),
        "probe": spec.probe.model_dump(mode="json"),
    }
    return json.dumps(shared, sort_keys=True, separators=(",", ":"))


class _GroupData:
    """The members' data sets: one shared copy when they are all equal, else stacked per member."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        first = datasets[0]
        self.shared = all(d is first or _same_data(d, first) for d in datasets[1:])
        self.input_shape, self.num_classes = first.input_shape, first.num_classes
        if self.shared:
            self.train_x, self.train_y, self.test_x, self.test_y = (
                first.train_x,
                first.train_y,
                first.test_x,
                first.test_y,
            )
        else:
            self.train_x = torch.stack([d.train_x for d in datasets])  # (members, n_train, ...)
            self.train_y = torch.stack([d.train_y for d in datasets])  # (members, n_train)
            self.test_x = torch.stack([d.test_x for d in datasets])  # (members, n_test, ...)
            self.test_y = torch.stack([d.test_y for d in datasets])  # (members, n_test)

    def batches(self, batch_size: int, seeds: Sequence[int]) -> EnsembleBatches:
        """Return the members' batch order."""
        if self.shared:
            return EnsembleBatches(self.train_x, self.train_y, batch_size, seeds)
        examples = self.train_x.shape[1]
        return EnsembleBatches(self.train_x.flatten(0, 1), self.train_y.flatten(0, 1), batch_size, seeds, examples)

    def keep(self, members: Sequence[int]) -> None:
        """Keep the data of the members at positions `members` (nothing to do when shared)."""
        if not self.shared:
            index = torch.as_tensor(list(members), dtype=torch.long)
            self.train_x, self.train_y, self.test_x, self.test_y = (
                t.index_select(0, index) for t in (self.train_x, self.train_y, self.test_x, self.test_y)
            )


def _same_data(a: Dataset, b: Dataset) -> bool:
    pairs = ((a.train_x, b.train_x), (a.train_y, b.train_y), (a.test_x, b.test_x), (a.test_y, b.test_y))
    return all(x.shape == y.shape and torch.equal(x, y) for x, y in pairs)


@torch.inference_mode()
def evaluate_members(
    model: EnsembleMLP, x: torch.Tensor, y: torch.Tensor, batch_size: int, shared: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Return each member's (mean cross-entropy in nats, accuracy as a fraction), two ``(members,)`` arrays.

    `x`, `y` are ``(examples, ...)``, ``(examples,)`` seen by every member when `shared`, else
    ``(members, examples, ...)``, ``(members, examples)``. Evaluates in eval mode, in chunks of
    `batch_size` examples, as `evaluate` does for one model.
    """
    was_training = model.training
    model.eval()
    members = model.members
    examples = x.shape[0] if shared else x.shape[1]
    total_loss = np.zeros(members)
    correct = np.zeros(members)
    try:
        for start in range(0, examples, batch_size):
            if shared:
                chunk_x, target = x[start : start + batch_size], y[start : start + batch_size].expand(members, -1)
            else:
                chunk_x, target = x[:, start : start + batch_size], y[:, start : start + batch_size]
            logits, _ = model(chunk_x, shared_input=shared)  # (members, chunk, classes)
            losses = F.cross_entropy(logits.flatten(0, 1), target.reshape(-1), reduction="none").view(members, -1)
            total_loss += losses.sum(dim=1).double().numpy()
            correct += (logits.argmax(dim=2) == target).sum(dim=1).numpy()
    finally:
        model.train(was_training)
    return total_loss / examples, correct / examples


class _Member:
    """One member's identity and where its measurements go."""

    def __init__(self, spec: ExperimentSpec, callbacks: TrainCallbacks) -> None:
        self.spec, self.callbacks = spec, callbacks
        self.outcome: RunOutcome | None = None

    def emit(self, points: list[MetricPoint]) -> None:
        if self.callbacks.on_metrics is not None and points:
            self.callbacks.on_metrics(points)

    def sink(self, stats: pd.DataFrame, histograms: pd.DataFrame | None) -> None:
        if self.callbacks.keep_frames:
            self.callbacks.frames.append(stats)
        if self.callbacks.on_layer_stats is not None:
            self.callbacks.on_layer_stats(stats, histograms)

    def end(self, outcome: RunOutcome) -> None:
        self.outcome = outcome
        if self.callbacks.on_end is not None:
            self.callbacks.on_end(outcome)


def _rows(model: EnsembleMLP) -> list[RowInfo]:
    rows = []
    for position, layer in enumerate(model.layers):
        if layer.kind == "activation":
            name = activation_name(model.activations[layer.index])
            rows.append(RowInfo(position, layer.name, position, "activation", layer.module_type, name))
        else:
            rows.append(
                RowInfo(
                    position,
                    layer.name,
                    position,
                    "norm" if layer.kind == "batch" else "weight",
                    layer.module_type,
                    None,
                )
            )
    return rows


class _GroupProbe:
    """Wires an `EnsembleMLP` to an `EnsembleProbe`: which tensors feed which rows."""

    def __init__(self, model: EnsembleMLP, spec: ExperimentSpec, members: list[_Member]) -> None:
        probe = spec.probe
        self.model = model
        self.probe = EnsembleProbe(
            _rows(model),
            [m.sink for m in members],
            every=probe.every,
            percentiles=probe.percentiles,
            flush_every=probe.flush_every,
        )
        self.activations = [
            (layer.name, rule_for_module(model.activations[layer.index], probe.saturation_eps))
            for layer in model.layers
            if layer.kind == "activation"
        ]
        self.norms = [layer for layer in model.layers if layer.kind == "batch"]
        self.weighted = [layer for layer in model.layers if layer.kind != "activation"]
        weights = self.weights()
        layouts = [tuple(w.shape[1:]) if layer.kind == "linear" else None for layer, w in zip(self.weighted, weights)]
        self.tracker = EnsembleWeightTracker(layouts, [w[0].numel() for w in weights])  # type: ignore[arg-type]

    def weights(self) -> list[nn.Parameter]:
        """Return the tracked weights (Linear weights, BatchNorm gammas) in row order."""
        return [
            self.model.weights[w.index] if w.kind == "linear" else self.model.gammas[w.index] for w in self.weighted
        ]

    def record(
        self,
        step: int,
        captured: dict[str, torch.Tensor],
        pre_grads: Sequence[torch.Tensor],
        grads: dict[int, torch.Tensor],
    ) -> None:
        """Record one step; `pre_grads` follow `self.activations`, `grads` maps id(parameter) to its gradient."""
        activations = [(name, rule, captured[name].detach(), g) for (name, rule), g in zip(self.activations, pre_grads)]
        weights = self.weights()
        raw = self.tracker.measure(weights, [grads.get(id(w)) for w in weights])
        norms = []
        for layer in self.norms:
            running_mean, running_var = self.model.running_stats(layer.index)
            norms.append(
                (
                    layer.name,
                    norm_raw(
                        captured[layer.name],
                        self.model.gammas[layer.index],
                        self.model.betas[layer.index],
                        running_mean,
                        running_var,
                    ),
                )
            )
        self.probe.record(step, activations, [(w.name, r) for w, r in zip(self.weighted, raw)], norms)

    def keep(self, members: Sequence[int]) -> None:
        self.probe.keep(members)
        self.tracker.keep(torch.as_tensor(list(members), dtype=torch.long))


def _optimizer(model: EnsembleMLP, specs: Sequence[ExperimentSpec]) -> EnsembleSGD:
    momentum = [s.optim.momentum if s.optim.name == "momentum" else 0.0 for s in specs]
    return EnsembleSGD(
        model.parameter_list(), [s.optim.lr for s in specs], momentum, [s.optim.weight_decay for s in specs]
    )


def _evaluation_points(
    model: EnsembleMLP, data: _GroupData, spec: ExperimentSpec, step: int
) -> list[list[MetricPoint]]:
    size = spec.train.eval_batch_size
    train_loss, train_acc = evaluate_members(model, data.train_x, data.train_y, size, data.shared)
    test_loss, test_acc = evaluate_members(model, data.test_x, data.test_y, size, data.shared)
    return [
        [
            MetricPoint(step, "train_loss", float(a)),
            MetricPoint(step, "train_accuracy", float(b)),
            MetricPoint(step, "test_loss", float(c)),
            MetricPoint(step, "test_accuracy", float(d)),
        ]
        for a, b, c, d in zip(train_loss, train_acc, test_loss, test_acc)
    ]


class GroupTraining:
    """One vectorized group being trained: `step` advances every member still training by one step.

    `train_group` drives it; benchmarks time `step` alone. `members` are those still training.
    """

    def __init__(
        self, specs: Sequence[ExperimentSpec], datasets: Sequence[Dataset], callbacks: Sequence[TrainCallbacks]
    ) -> None:
        if not specs or not (len(specs) == len(datasets) == len(callbacks)):
            raise TrainingError("train_group needs one data set and one TrainCallbacks per spec, and at least one spec")
        keys = {group_key(spec) for spec in specs}
        if None in keys or len(keys) != 1:
            raise TrainingError("these specs cannot train as one group (see train.group_key); train them one by one")
        self.spec = specs[0]
        self.members = [_Member(spec, cb) for spec, cb in zip(specs, callbacks)]
        self.everyone = list(self.members)
        self.model = stack_members(
            [build(s.model, d.input_shape, d.num_classes, s.train.seed) for s, d in zip(specs, datasets)]
        )
        self.model.train()
        self.data = _GroupData(datasets)
        self.optimizer = _optimizer(self.model, specs)
        self.batches = self.data.batches(self.spec.data.batch_size, [s.train.seed for s in specs])
        self.probe = _GroupProbe(self.model, self.spec, self.members)
        self.done = 0  # steps taken

    def evaluate(self) -> None:
        """Evaluate every member still training and hand each its metric points (at step `done`)."""
        for member, points in zip(self.members, _evaluation_points(self.model, self.data, self.spec, self.done)):
            member.emit(points)

    def step(self) -> None:
        """Train every member still training one step (members whose loss diverges end here)."""
        self.members = _one_step(
            self.done,
            self.model,
            self.data,
            self.optimizer,
            self.batches,
            self.probe,
            self.members,
            self.spec.probe.every,
        )
        self.done += 1

    def close(self) -> None:
        """Hand over the rows still held by the probe."""
        self.probe.probe.close()


def train_group(
    specs: Sequence[ExperimentSpec], datasets: Sequence[Dataset], callbacks: Sequence[TrainCallbacks]
) -> list[RunOutcome]:
    """Train `specs` (one `group_key`) as one vectorized model; return each member's outcome, in order.

    Member i gets what ``train(specs[i], datasets[i], callbacks[i])`` would give: metrics at step 0
    and every ``train.eval_every`` updates, ``batch_loss`` at the probe's steps, probe rows through
    `on_layer_stats`, progress, and `on_end` with its outcome as soon as it ends (a diverged member
    ends at once, its last rows handed over first).
    """
    group = GroupTraining(specs, datasets, callbacks)
    steps, eval_every = group.spec.train.steps, group.spec.train.eval_every
    group.evaluate()
    try:
        while group.done < steps and group.members:
            group.step()
            done = group.done
            if group.members and (done % eval_every == 0 or done == steps):
                group.evaluate()
            for member in group.members:
                if member.callbacks.on_progress is not None:
                    member.callbacks.on_progress(done, steps)
    finally:
        group.close()
    for member in group.members:
        member.end(RunOutcome("finished", steps))
    return [m.outcome or RunOutcome("failed", 0, message="ended without an outcome") for m in group.everyone]


def _one_step(
    step: int,
    model: EnsembleMLP,
    data: _GroupData,
    optimizer: EnsembleSGD,
    batches: EnsembleBatches,
    probe: _GroupProbe,
    members: list[_Member],
    every: int,
) -> list[_Member]:
    """Train every member one step; return the members still training (those whose loss stayed finite)."""
    recorded = probe.probe.records(step)
    if recorded:
        probe.tracker.snapshot(probe.weights())
    x, y = batches.next()  # (members, batch, ...), (members, batch)
    logits, captured = model(x, capture=recorded)  # (members, batch, classes)
    losses = (
        F.cross_entropy(logits.flatten(0, 1), y.reshape(-1), reduction="none").view(model.members, -1).mean(dim=1)
    )  # (members,)
    parameters = model.parameter_list()
    pre = [captured[name] for name, _ in probe.activations] if recorded else []
    # one backward for all: member i's parameters get the gradient of member i's loss only
    grads = torch.autograd.grad(losses.sum(), parameters + pre)
    values = losses.detach().tolist()  # one host sync per step, as a lone run's divergence check
    diverged = [i for i, value in enumerate(values) if not math.isfinite(value)]
    optimizer.step(grads[: len(parameters)], frozen=diverged)
    if recorded:  # after the update, as Probe.step(): update ratios and BN running statistics are the step's
        probe.record(step, captured, grads[len(parameters) :], {id(p): g for p, g in zip(parameters, grads)})
    if every and step % every == 0:
        for i, member in enumerate(members):
            if i not in diverged:
                member.emit([MetricPoint(step, "batch_loss", values[i])])
    if not diverged:
        return members
    survivors = [i for i in range(len(members)) if i not in diverged]
    probe.keep(survivors)  # hands every member's rows over first: a diverged member's last rows explain it
    for i in diverged:
        members[i].end(
            RunOutcome("diverged", step, diverged_at=step, message=f"loss became {values[i]} at step {step}")
        )
    if survivors:
        for part in (model, optimizer, batches, data):
            part.keep(survivors)
    return [members[i] for i in survivors]
