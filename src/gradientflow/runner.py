"""The only wiring: expand a spec, skip what the store already holds, train the rest, store it.

Runs execute in this process (``workers=1``) or in N spawned worker processes, each with one
torch thread and its own database connection (two single-threaded runs use two cores better
than one run on two threads). Progress reaches the caller through `RunnerEvents` callbacks.
"""

from __future__ import annotations

import multiprocessing
import platform
import queue as queue_module
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from . import __version__
from .data import Dataset, load_dataset
from .errors import GradientflowError
from .records import RunOutcome
from .spec import ExperimentSpec, ResolvedRun, expand
from .store import Store
from .train import TrainCallbacks, train

__all__ = ["RunnerEvents", "SweepResult", "plan", "run_sweep", "execute_run", "execute_runs", "check_data", "software_versions", "load_run_dataset"]


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
    return load_dataset(data.name, data_dir=data.data_dir, seed=spec.train.seed, download=data.download, **dict(data.options))


def plan(spec: ExperimentSpec, db_path: str | Path) -> tuple[list[ResolvedRun], list[ResolvedRun]]:
    """Return (every run of the sweep, the runs still to do): finished or diverged runs are skipped."""
    runs = expand(spec)
    with Store(db_path) as store:
        completed = store.completed_run_ids()
    return runs, [run for run in runs if run.run_id not in completed]


def execute_run(run: ResolvedRun, db_path: str | Path, on_progress: Callable[[int, int], None] | None = None) -> RunOutcome:
    """Train one run and store everything it measures; return its outcome.

    A run interrupted here (Ctrl-C, kill -9) stays ``running`` in the store and is redone from
    scratch by the next sweep; its partial rows are replaced, never duplicated. An error inside
    training marks the run ``failed`` with the message, keeping the rows recorded before it.
    """
    dataset = load_run_dataset(run.spec)
    info = run.run_info()
    info = type(info)(info.run_id, info.name, info.spec, info.seed, "running", software_versions())
    with Store(db_path) as store:
        store.begin_run(info)
        with store.writer(run.run_id) as writer:

            def on_layer_stats(stats: Any, histograms: Any) -> None:
                writer.add_layer_stats(stats)
                if histograms is not None:
                    writer.add_histograms(histograms)

            callbacks = TrainCallbacks(on_layer_stats=on_layer_stats, on_metrics=writer.add_metrics, on_progress=on_progress)
            try:
                outcome = train(run.spec, dataset, callbacks)
            except Exception as error:  # a bug or a bad model: record it, keep what was measured
                outcome = RunOutcome("failed", 0, message=f"{type(error).__name__}: {error}")
                writer.flush()
                store.finish_run(run.run_id, outcome)
                raise
        store.finish_run(run.run_id, outcome)
    return outcome


_progress_queue: Any = None  # set in each worker process by _worker_init


def _worker_init(progress_queue: Any) -> None:
    global _progress_queue
    torch.set_num_threads(1)  # two one-thread workers use two cores better than one two-thread run
    _progress_queue = progress_queue


def _failed(error: Exception) -> RunOutcome:
    return RunOutcome("failed", 0, message=f"{type(error).__name__}: {error}")


def _worker_execute(run: ResolvedRun, db_path: str) -> RunOutcome:
    last = [0]

    def report(done: int, total: int) -> None:
        if done - last[0] >= max(1, total // 100) or done == total:
            last[0] = done
            _progress_queue.put((run.run_id, done, total))

    try:
        return execute_run(run, db_path, report)
    except GradientflowError:
        raise
    except Exception as error:  # a failed run is recorded as such; the sweep goes on
        return _failed(error)


def execute_runs(runs: Sequence[ResolvedRun], db_path: str | Path, workers: int = 1, events: RunnerEvents | None = None) -> dict[str, RunOutcome]:
    """Train and store `runs` (in the given order) on `workers` processes; return each run's outcome.

    A run that raises is stored as ``failed`` and the others go on; a GradientflowError (a user
    mistake such as a missing data set) stops everything.
    """
    events = events or RunnerEvents()
    if workers > 1 and len(runs) > 1:
        return _run_parallel(list(runs), str(db_path), workers, events)
    outcomes: dict[str, RunOutcome] = {}
    for run in runs:
        if events.on_start:
            events.on_start(run)
        progress = (lambda done, total, rid=run.run_id: events.on_progress(rid, done, total)) if events.on_progress else None
        try:
            outcome = execute_run(run, db_path, progress)
        except GradientflowError:
            raise
        except Exception as error:
            outcome = _failed(error)
        outcomes[run.run_id] = outcome
        if events.on_end:
            events.on_end(run, outcome)
    return outcomes


def check_data(runs: Sequence[ResolvedRun]) -> None:
    """Load each distinct data set the runs need once, so a missing one fails before any run starts."""
    for spec in {run.spec.data.model_dump_json(): run.spec for run in runs}.values():
        load_run_dataset(spec)


def run_sweep(spec: ExperimentSpec, db_path: str | Path, workers: int = 1, events: RunnerEvents | None = None) -> SweepResult:
    """Run every run of `spec` not already finished in the store at `db_path`; return what happened."""
    runs, todo = plan(spec, db_path)
    skipped = [run.run_id for run in runs if run not in todo]
    check_data(todo)
    return SweepResult(runs, skipped, execute_runs(todo, db_path, workers, events))


def _run_parallel(todo: list[ResolvedRun], db_path: str, workers: int, events: RunnerEvents) -> dict[str, RunOutcome]:
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()  # handed to workers at start-up: no Manager process to spawn
    outcomes: dict[str, RunOutcome] = {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=(progress_queue,)) as pool:
        pending = {}
        for run in todo:
            pending[pool.submit(_worker_execute, run, db_path)] = run
            if events.on_start:
                events.on_start(run)
        while pending:
            done, _ = wait(list(pending), timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(progress_queue, events)
            for future in done:
                run = pending.pop(future)
                outcome = future.result()
                outcomes[run.run_id] = outcome
                if events.on_end:
                    events.on_end(run, outcome)
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
