"""The worker's side: train one task (a run, or a vectorized group) and hand every record to `emit`.

Nothing here opens the database: records leave as `Rows`, `Progress` and `Ended` messages, and
the driver's `Recorder` alone writes them. The same function runs in the driver's process, in a
local worker process (messages streamed over a pipe) and in a Ray task (messages returned).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from gradientflow import __version__
from gradientflow.data import Dataset, load_dataset
from gradientflow.errors import GradientflowError
from gradientflow.models import build
from gradientflow.records import MetricPoint, RunOutcome
from gradientflow.spec import ExperimentSpec, ResolvedRun
from gradientflow.train import TrainCallbacks, train, train_group

__all__ = [
    "Observer",
    "Rows",
    "Progress",
    "Ended",
    "Message",
    "Emit",
    "run_task",
    "failed_outcome",
    "software_versions",
    "load_run_dataset",
]

#: ``observe(model, emit)`` installs hooks on a run's freshly built model before training and
#: returns a function that removes them; ``emit(points)`` stores metric points with the run. It
#: lets a study record a quantity the probe does not (one unit's input, say) while the run stays
#: an ordinary stored, resumable run of its spec. It must be picklable (a module-level function
#: or a `functools.partial` of one) to reach worker processes.
Observer = Callable[[nn.Module, Callable[[list[MetricPoint]], None]], Callable[[], None]]


@dataclass(frozen=True)
class Rows:
    """A batch of one run's records: a layer-stats frame, histogram bins and/or metric points."""

    run_id: str
    layer_stats: pd.DataFrame | None = None
    histograms: pd.DataFrame | None = None
    metrics: tuple[MetricPoint, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Progress:
    """A run has done `done` of `total` steps."""

    run_id: str
    done: int
    total: int


@dataclass(frozen=True)
class Ended:
    """A run ended (after its last `Rows`), with its outcome."""

    run_id: str
    outcome: RunOutcome


Message = Rows | Progress | Ended
Emit = Callable[[Message], None]


def software_versions() -> dict[str, str]:
    """Return the versions recorded with every run: python, torch, gradientflow."""
    return {"python": platform.python_version(), "torch": torch.__version__, "gradientflow": __version__}


def load_run_dataset(spec: ExperimentSpec) -> Dataset:
    """Return the data set a spec names (DataError, with where it looked, when it is missing)."""
    data = spec.data
    return load_dataset(
        data.name, data_dir=data.data_dir, seed=spec.train.seed, download=data.download, **dict(data.options)
    )


def failed_outcome(error: BaseException) -> RunOutcome:
    """Return the ``failed`` outcome recording `error` as ``"Type: message"``."""
    return RunOutcome("failed", 0, message=f"{type(error).__name__}: {error}")


def _throttled(run_id: str, emit: Emit) -> Callable[[int, int], None]:
    last = [0]

    def report(done: int, total: int) -> None:  # one message per percent: cheap over a pipe
        if done - last[0] >= max(1, total // 100) or done == total:
            last[0] = done
            emit(Progress(run_id, done, total))

    return report


def _callbacks(run_id: str, emit: Emit, histograms: bool) -> TrainCallbacks:
    def on_layer_stats(stats: pd.DataFrame, bins: pd.DataFrame | None) -> None:
        # Copies: the trainer may reuse its frames, and a Ray task keeps them until it returns.
        emit(
            Rows(run_id, layer_stats=stats.copy(), histograms=bins.copy() if histograms and bins is not None else None)
        )

    return TrainCallbacks(
        on_layer_stats=on_layer_stats,
        on_metrics=lambda points: emit(Rows(run_id, metrics=tuple(points))),
        on_progress=_throttled(run_id, emit),
    )


def run_task(task: Sequence[ResolvedRun], emit: Emit, observe: Observer | None = None) -> None:
    """Train `task` and emit its records, then one `Ended` per run (``failed`` with the error on a crash).

    A GradientflowError (a user's mistake, such as a model that cannot be built) is raised again
    after the failed runs were emitted; any other error only fails the task's runs.
    """
    if len(task) == 1:
        _run_single(task[0], emit, observe)
    else:
        _run_group(list(task), emit)


def _run_single(run: ResolvedRun, emit: Emit, observe: Observer | None) -> None:
    try:
        dataset = load_run_dataset(run.spec)
        model = (
            build(run.spec.model, dataset.input_shape, dataset.num_classes, run.spec.train.seed) if observe else None
        )
        remove: Callable[[], None] = lambda: None  # noqa: E731
        if observe is not None and model is not None:
            remove = observe(model, lambda points: emit(Rows(run.run_id, metrics=tuple(points))))
        try:
            outcome = train(run.spec, dataset, _callbacks(run.run_id, emit, histograms=True), model=model)
        finally:
            remove()
    except Exception as error:  # a bug or a bad model: record it, keep what was measured
        emit(Ended(run.run_id, failed_outcome(error)))
        if isinstance(error, GradientflowError):
            raise
        return
    emit(Ended(run.run_id, outcome))


def _run_group(runs: list[ResolvedRun], emit: Emit) -> None:
    ended: set[str] = set()

    def member_callbacks(run: ResolvedRun) -> TrainCallbacks:
        callbacks = _callbacks(run.run_id, emit, histograms=False)

        def on_end(outcome: RunOutcome, run_id: str = run.run_id) -> None:
            ended.add(run_id)
            emit(Ended(run_id, outcome))

        callbacks.on_end = on_end
        return callbacks

    try:
        datasets = [load_run_dataset(run.spec) for run in runs]
        train_group([run.spec for run in runs], datasets, [member_callbacks(run) for run in runs])
    except Exception as error:  # record it for every member still training
        for run in runs:
            if run.run_id not in ended:
                emit(Ended(run.run_id, failed_outcome(error)))
        if isinstance(error, GradientflowError):
            raise
