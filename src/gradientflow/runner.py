"""The only wiring: expand a spec, skip what the store already holds, train the rest, store it.

Runs execute in this process (``workers=1``) or in N spawned worker processes, each with one
torch thread and its own database connection (two single-threaded runs use two cores better
than one run on two threads). With ``vectorize="auto"`` (the default) runs that differ only in
seed, learning rate, momentum, weight decay or initialization train as one vectorized group
(`train.train_group`); each member is still stored as its own run. Progress reaches the caller
through `RunnerEvents` callbacks, per run, grouped or not.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import platform
import queue as queue_module
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from . import __version__
from .data import Dataset, load_dataset
from .errors import GradientflowError, TrainingError
from .models import build
from .records import MetricPoint, RunInfo, RunOutcome
from .spec import ExperimentSpec, ResolvedRun, expand
from .store import Store
from .train import TrainCallbacks, group_key, train, train_group

__all__ = [
    "RunnerEvents",
    "SweepResult",
    "Observer",
    "Vectorize",
    "VECTORIZE_MODES",
    "MAX_GROUP",
    "plan",
    "run_sweep",
    "execute_run",
    "execute_runs",
    "execute_group",
    "group_runs",
    "check_data",
    "software_versions",
    "load_run_dataset",
]

Vectorize = Literal["auto", "off"]
VECTORIZE_MODES: tuple[str, ...] = ("auto", "off")
#: Members per vectorized group: past a few dozen members a step is arithmetic-bound, and larger
#: groups only hold more memory and lose more work to a kill.
MAX_GROUP = 64

#: ``observe(model, emit)`` installs hooks on a run's freshly built model before training and
#: returns a function that removes them; ``emit(points)`` stores metric points with the run. It
#: lets a study record a quantity the probe does not (one unit's input, say) while the run stays
#: an ordinary stored, resumable run of its spec. It must be picklable (a module-level function
#: or a `functools.partial` of one) to reach worker processes.
Observer = Callable[[nn.Module, Callable[[list[MetricPoint]], None]], Callable[[], None]]


@dataclass
class RunnerEvents:
    """Callbacks the runner calls as work progresses (all optional)."""

    on_start: Callable[[ResolvedRun], None] | None = None
    on_progress: Callable[[str, int, int], None] | None = None  # run_id, steps done, total
    on_end: Callable[[ResolvedRun, RunOutcome], None] | None = None


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did: every run of the grid, which were skipped as already stored, and outcomes."""

    runs: list[ResolvedRun]
    skipped: list[str]
    outcomes: dict[str, RunOutcome]

    @property
    def failed(self) -> list[str]:
        """Return the ids of runs that failed (an error, not a divergence)."""
        return [run_id for run_id, o in self.outcomes.items() if o.status == "failed"]


def software_versions() -> dict[str, str]:
    """Return the versions recorded with every run: python, torch, gradientflow."""
    return {"python": platform.python_version(), "torch": torch.__version__, "gradientflow": __version__}


def load_run_dataset(spec: ExperimentSpec) -> Dataset:
    """Return the data set a spec names (DataError, with where it looked, when it is missing)."""
    data = spec.data
    return load_dataset(
        data.name, data_dir=data.data_dir, seed=spec.train.seed, download=data.download, **dict(data.options)
    )


def plan(spec: ExperimentSpec, db_path: str | Path) -> tuple[list[ResolvedRun], list[ResolvedRun]]:
    """Return (every run of the sweep, the runs still to do): finished or diverged runs are skipped."""
    runs = expand(spec)
    with Store(db_path) as store:
        completed = store.completed_run_ids()
    return runs, [run for run in runs if run.run_id not in completed]


def _running_info(run: ResolvedRun) -> RunInfo:
    info = run.run_info()
    return type(info)(info.run_id, info.name, info.spec, info.seed, "running", software_versions())


def execute_run(
    run: ResolvedRun,
    db_path: str | Path,
    on_progress: Callable[[int, int], None] | None = None,
    observe: Observer | None = None,
) -> RunOutcome:
    """Train one run and store everything it measures; return its outcome.

    A run interrupted here (Ctrl-C, kill -9) stays ``running`` in the store and is redone from
    scratch by the next sweep; its partial rows are replaced, never duplicated. An error inside
    training marks the run ``failed`` with the message, keeping the rows recorded before it.
    With `observe`, the model is built here exactly as the trainer would (same seed, same
    weights) and the observer's hooks are on it during training; its points are stored as metrics.
    """
    dataset = load_run_dataset(run.spec)
    info = _running_info(run)
    model = (
        build(run.spec.model, dataset.input_shape, dataset.num_classes, run.spec.train.seed)
        if observe is not None
        else None
    )
    with Store(db_path) as store:
        store.begin_run(info)
        with store.writer(run.run_id) as writer:

            def on_layer_stats(stats: Any, histograms: Any) -> None:
                writer.add_layer_stats(stats)
                if histograms is not None:
                    writer.add_histograms(histograms)

            remove = observe(model, writer.add_metrics) if observe is not None and model is not None else (lambda: None)
            callbacks = TrainCallbacks(
                on_layer_stats=on_layer_stats, on_metrics=writer.add_metrics, on_progress=on_progress
            )
            try:
                outcome = train(run.spec, dataset, callbacks, model=model)
            except Exception as error:  # a bug or a bad model: record it, keep what was measured
                outcome = RunOutcome("failed", 0, message=f"{type(error).__name__}: {error}")
                writer.flush()
                store.finish_run(run.run_id, outcome)
                raise
            finally:
                remove()
        store.finish_run(run.run_id, outcome)
    return outcome


def group_runs(
    runs: Sequence[ResolvedRun], vectorize: Vectorize = "auto", workers: int = 1, max_members: int = MAX_GROUP
) -> list[list[ResolvedRun]]:
    """Return `runs` as tasks: lists of runs that train as one vectorized group, or single runs.

    With ``vectorize="off"`` every run is its own task. With ``"auto"`` runs with the same
    `train.group_key` form a group (in first-appearance order), at most `max_members` each; groups
    are then halved until there are at least `workers` tasks, so no worker process sits idle.
    """
    if vectorize not in VECTORIZE_MODES:
        raise TrainingError(f"vectorize: {vectorize!r} is not one of {', '.join(VECTORIZE_MODES)}")
    if vectorize == "off":
        return [[run] for run in runs]
    tasks: list[list[ResolvedRun]] = []
    by_key: dict[str, list[ResolvedRun]] = {}
    for run in runs:
        key = group_key(run.spec)
        if key is None:
            tasks.append([run])
        elif key in by_key and len(by_key[key]) < max_members:
            by_key[key].append(run)
        else:
            by_key[key] = [run]
            tasks.append(by_key[key])
    while len(tasks) < workers:
        largest = max(range(len(tasks)), key=lambda i: len(tasks[i]), default=None)
        if largest is None or len(tasks[largest]) < 2:
            break
        task = tasks[largest]
        tasks[largest : largest + 1] = [task[: len(task) // 2], task[len(task) // 2 :]]
    return tasks


def _group_id(runs: Sequence[ResolvedRun]) -> str:
    return "group-" + hashlib.sha256(",".join(r.run_id for r in runs).encode("ascii")).hexdigest()[:12]


def execute_group(
    runs: Sequence[ResolvedRun],
    db_path: str | Path,
    on_progress: Callable[[str, int, int], None] | None = None,
    on_end: Callable[[ResolvedRun, RunOutcome], None] | None = None,
) -> dict[str, RunOutcome]:
    """Train `runs` (one `group_key`) as one vectorized group, store each as its own run; return the outcomes.

    Every member is begun in the store at the start and finished as soon as it ends (a diverged
    member at once), so a group killed midway leaves its ended members stored and the others
    ``running``: the next sweep redoes only those. An error inside training marks the members
    still training ``failed`` (a GradientflowError is re-raised after that).
    """
    runs = list(runs)
    datasets = [load_run_dataset(run.spec) for run in runs]
    outcomes: dict[str, RunOutcome] = {}
    with Store(db_path) as store, ExitStack() as stack:
        group_id = _group_id(runs)
        for run in runs:
            store.begin_run(_running_info(run), group_id=group_id)
        writers = [stack.enter_context(store.writer(run.run_id)) for run in runs]

        def ended(run: ResolvedRun, writer: Any, outcome: RunOutcome) -> None:
            writer.close()
            store.finish_run(run.run_id, outcome)
            outcomes[run.run_id] = outcome
            if on_end is not None:
                on_end(run, outcome)

        callbacks = [_group_callbacks(run, writer, ended, on_progress) for run, writer in zip(runs, writers)]
        try:
            train_group([run.spec for run in runs], datasets, callbacks)
        except Exception as error:  # a bug or a bad model: record it for every member still training
            failed = RunOutcome("failed", 0, message=f"{type(error).__name__}: {error}")
            for run, writer in zip(runs, writers):
                if run.run_id not in outcomes:
                    ended(run, writer, failed)
            if isinstance(error, GradientflowError):
                raise
    return outcomes


def _group_callbacks(
    run: ResolvedRun,
    writer: Any,
    ended: Callable[[ResolvedRun, Any, RunOutcome], None],
    on_progress: Callable[[str, int, int], None] | None,
) -> TrainCallbacks:
    def on_layer_stats(stats: Any, histograms: Any) -> None:
        writer.add_layer_stats(stats)

    progress = (lambda done, total: on_progress(run.run_id, done, total)) if on_progress is not None else None
    return TrainCallbacks(
        on_layer_stats=on_layer_stats,
        on_metrics=writer.add_metrics,
        on_progress=progress,
        on_end=lambda outcome: ended(run, writer, outcome),
    )


_progress_queue: Any = None  # set in each worker process by _worker_init


def _worker_init(progress_queue: Any) -> None:
    global _progress_queue
    torch.set_num_threads(1)  # two one-thread workers use two cores better than one two-thread run
    _progress_queue = progress_queue


def _failed(error: Exception) -> RunOutcome:
    return RunOutcome("failed", 0, message=f"{type(error).__name__}: {error}")


def _reporter(run_id: str) -> Callable[[int, int], None]:
    last = [0]

    def report(done: int, total: int) -> None:
        if done - last[0] >= max(1, total // 100) or done == total:
            last[0] = done
            _progress_queue.put((run_id, done, total))

    return report


def _worker_execute(task: list[ResolvedRun], db_path: str, observe: Observer | None = None) -> dict[str, RunOutcome]:
    try:
        if len(task) == 1:
            return {task[0].run_id: execute_run(task[0], db_path, _reporter(task[0].run_id), observe)}
        reporters = {run.run_id: _reporter(run.run_id) for run in task}
        return execute_group(task, db_path, lambda run_id, done, total: reporters[run_id](done, total))
    except GradientflowError:
        raise
    except Exception as error:  # a failed run is recorded as such; the sweep goes on
        return {run.run_id: _failed(error) for run in task}


def execute_runs(
    runs: Sequence[ResolvedRun],
    db_path: str | Path,
    workers: int = 1,
    events: RunnerEvents | None = None,
    vectorize: Vectorize = "auto",
    observe: Observer | None = None,
) -> dict[str, RunOutcome]:
    """Train and store `runs` on `workers` processes; return each run's outcome (in the order of `runs`).

    With ``vectorize="auto"`` compatible runs train as vectorized groups (`group_runs`); ``"off"``
    trains every run alone, as does an `observe`r (its hooks need each run's own model). A run
    that raises is stored as ``failed`` and the others go on; a GradientflowError (a user mistake
    such as a missing data set) stops everything.
    """
    events = events or RunnerEvents()
    tasks = group_runs(runs, "off" if observe is not None else vectorize, workers)
    if workers > 1 and len(tasks) > 1:
        outcomes = _run_parallel(tasks, str(db_path), workers, events, observe)
    else:
        outcomes = {}
        for task in tasks:
            outcomes.update(_execute_here(task, db_path, events, observe))
    return {run.run_id: outcomes[run.run_id] for run in runs if run.run_id in outcomes}


def _execute_here(
    task: list[ResolvedRun], db_path: str | Path, events: RunnerEvents, observe: Observer | None = None
) -> dict[str, RunOutcome]:
    for run in task:
        if events.on_start:
            events.on_start(run)
    if len(task) > 1:
        return execute_group(task, db_path, events.on_progress, events.on_end)
    (run,) = task
    report = events.on_progress
    progress = functools.partial(report, run.run_id) if report else None
    try:
        outcome = execute_run(run, db_path, progress, observe)
    except GradientflowError:
        raise
    except Exception as error:
        outcome = _failed(error)
    if events.on_end:
        events.on_end(run, outcome)
    return {run.run_id: outcome}


def check_data(runs: Sequence[ResolvedRun]) -> None:
    """Load each distinct data set the runs need once, so a missing one fails before any run starts."""
    for spec in {run.spec.data.model_dump_json(): run.spec for run in runs}.values():
        load_run_dataset(spec)


def run_sweep(
    spec: ExperimentSpec,
    db_path: str | Path,
    workers: int = 1,
    events: RunnerEvents | None = None,
    vectorize: Vectorize = "auto",
) -> SweepResult:
    """Run every run of `spec` not already finished in the store at `db_path`; return what happened.

    `vectorize`: ``"auto"`` trains compatible runs as vectorized groups, ``"off"`` one by one.
    """
    runs, todo = plan(spec, db_path)
    skipped = [run.run_id for run in runs if run not in todo]
    check_data(todo)
    return SweepResult(runs, skipped, execute_runs(todo, db_path, workers, events, vectorize))


def _run_parallel(
    tasks: list[list[ResolvedRun]], db_path: str, workers: int, events: RunnerEvents, observe: Observer | None = None
) -> dict[str, RunOutcome]:
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()  # handed to workers at start-up: no Manager process to spawn
    outcomes: dict[str, RunOutcome] = {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=(progress_queue,)) as pool:
        pending = {}
        for task in tasks:
            pending[pool.submit(_worker_execute, task, db_path, observe)] = task
            for run in task:
                if events.on_start:
                    events.on_start(run)
        while pending:
            done, _ = wait(list(pending), timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(progress_queue, events)
            for future in done:
                task = pending.pop(future)
                result = future.result()
                outcomes.update(result)
                for run in task:
                    if events.on_end and run.run_id in result:
                        events.on_end(run, result[run.run_id])
        _drain(progress_queue, events)
    return outcomes


def _drain(progress_queue: Any, events: RunnerEvents) -> None:
    while True:
        try:
            run_id, done, total = progress_queue.get_nowait()
        except (queue_module.Empty, OSError, ValueError):
            return
        if events.on_progress:
            events.on_progress(run_id, done, total)
