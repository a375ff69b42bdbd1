"""The wiring: expand a spec, skip what the store already holds, hand the rest to a backend, store what comes back.

Backends: ``"local"`` trains in this process (``workers=1``) or in N spawned worker processes,
each with one torch thread (two single-threaded runs use two cores better than one run on two
threads); ``"ray"`` runs each task as a Ray task, on a cluster or a local instance. Either way
the workers only train: their records come back to this process, whose `Recorder` alone writes
the database, so storing, resuming and progress are one code path. With ``vectorize="auto"``
(the default) runs that differ only in seed, learning rate, momentum, weight decay or
initialization train as one vectorized group (`train.train_group`); each member is still stored
as its own run. Progress reaches the caller through `RunnerEvents` callbacks.

Two sweeps of one spec on one database share the work: each run is claimed (a lease with a
heartbeat) just before it is handed out; a run another live sweep trains is waited for, never
restarted, and taken over only when its sweep is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gradientflow.errors import StoreError, TrainingError
from gradientflow.records import RunOutcome
from gradientflow.runner import local
from gradientflow.runner.recorder import Recorder
from gradientflow.runner.resources import check_memory
from gradientflow.runner.tasks import Observer, load_run_dataset
from gradientflow.spec import ExperimentSpec, ResolvedRun, expand
from gradientflow.store import DEFAULT_LEASE_S, Store
from gradientflow.train import group_key

__all__ = [
    "RunnerEvents",
    "SweepResult",
    "Vectorize",
    "VECTORIZE_MODES",
    "Backend",
    "BACKENDS",
    "MAX_GROUP",
    "plan",
    "run_sweep",
    "execute_run",
    "execute_runs",
    "execute_group",
    "group_runs",
    "check_data",
]

Vectorize = Literal["auto", "off"]
VECTORIZE_MODES: tuple[str, ...] = ("auto", "off")
Backend = Literal["local", "ray"]
BACKENDS: tuple[str, ...] = ("local", "ray")
#: Members per vectorized group: past a few dozen members a step is arithmetic-bound, and larger
#: groups only hold more memory and lose more work to a kill.
MAX_GROUP = 64
#: Seconds between two looks at runs another sweep is training.
_WAIT_POLL_S = 1.0


@dataclass
class RunnerEvents:
    """Callbacks the runner calls as work progresses (all optional)."""

    on_start: Callable[[ResolvedRun], None] | None = None
    on_progress: Callable[[str, int, int], None] | None = None  # run_id, steps done, total
    on_end: Callable[[ResolvedRun, RunOutcome], None] | None = None
    on_wait: Callable[[list[ResolvedRun]], None] | None = None  # runs another sweep is training


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did: every run of the grid, which were skipped as already stored, and outcomes.

    `elsewhere`: runs another sweep on the same database trained (and stored) while this one waited.
    """

    runs: list[ResolvedRun]
    skipped: list[str]
    outcomes: dict[str, RunOutcome]
    elsewhere: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        """Return the ids of runs that failed (an error, not a divergence)."""
        return [run_id for run_id, o in self.outcomes.items() if o.status == "failed"]


def plan(spec: ExperimentSpec, db_path: str | Path) -> tuple[list[ResolvedRun], list[ResolvedRun]]:
    """Return (every run of the sweep, the runs still to do): finished or diverged runs are skipped."""
    runs = expand(spec)
    with Store(db_path) as store:
        completed = store.completed_run_ids()
    return runs, [run for run in runs if run.run_id not in completed]


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


def check_data(runs: Sequence[ResolvedRun]) -> None:
    """Check before any run starts that each fits in memory and its data set loads (each distinct one once)."""
    check_memory(runs)
    for spec in {run.spec.data.model_dump_json(): run.spec for run in runs}.values():
        load_run_dataset(spec)


def _dispatch(
    dispatcher: local.Dispatcher, workers: int, backend: Backend, address: str | None, observe: Observer | None
) -> None:
    if backend == "ray":
        from gradientflow.runner import ray_backend

        ray_backend.run_ray(dispatcher, workers, address, observe)
    elif workers > 1 and len(dispatcher.queue) > 1:
        local.run_pool(dispatcher, min(workers, len(dispatcher.queue)), observe)
    else:
        local.run_inline(dispatcher, observe)


def execute_runs(
    runs: Sequence[ResolvedRun],
    db_path: str | Path,
    workers: int = 1,
    events: RunnerEvents | None = None,
    vectorize: Vectorize = "auto",
    observe: Observer | None = None,
    *,
    backend: Backend = "local",
    address: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> dict[str, RunOutcome]:
    """Train and store `runs` on `backend`; return each run's outcome (in the order of `runs`).

    With ``vectorize="auto"`` compatible runs train as vectorized groups (`group_runs`); ``"off"``
    trains every run alone, as does an `observe`r (its hooks need each run's own model). A run
    that raises is stored as ``failed`` and the others go on; a GradientflowError (a user mistake
    such as a missing data set) stops everything. Runs another live sweep trains on the same
    database are waited for; a run stored meanwhile by it has no outcome here.
    """
    return _execute(runs, db_path, workers, events, vectorize, observe, backend, address, lease_s)[0]


def _execute(
    runs: Sequence[ResolvedRun],
    db_path: str | Path,
    workers: int,
    events: RunnerEvents | None,
    vectorize: Vectorize,
    observe: Observer | None,
    backend: Backend,
    address: str | None,
    lease_s: float,
) -> tuple[dict[str, RunOutcome], list[str]]:
    if backend not in BACKENDS:
        raise TrainingError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    events = events or RunnerEvents()
    tasks = group_runs(runs, "off" if observe is not None else vectorize, workers)
    done_elsewhere: list[str] = []
    with Recorder(db_path, events, lease_s) as recorder:
        while tasks:
            dispatcher = local.Dispatcher(tasks, recorder)
            _dispatch(dispatcher, workers, backend, address, observe)
            tasks, stored = _wait_for_others(dispatcher.elsewhere, recorder, events, vectorize, workers)
            done_elsewhere.extend(stored)
        outcomes = recorder.outcomes
    return {run.run_id: outcomes[run.run_id] for run in runs if run.run_id in outcomes}, done_elsewhere


def _wait_for_others(
    waiting: list[ResolvedRun], recorder: Recorder, events: RunnerEvents, vectorize: Vectorize, workers: int
) -> tuple[list[list[ResolvedRun]], list[str]]:
    """Wait until each run another sweep trains is stored, or free (its sweep died); return (runs to redo, stored ids)."""
    if waiting and events.on_wait:
        events.on_wait(waiting)
    stored: list[str] = []
    while waiting:
        completed = recorder.store.completed_run_ids()
        stored.extend(run.run_id for run in waiting if run.run_id in completed)
        waiting = [run for run in waiting if run.run_id not in completed]
        free = [
            run for run in waiting if not recorder.store.lease_is_live(run.run_id, recorder.owner, recorder.lease_s)
        ]
        if free:
            return group_runs(free, vectorize, workers), stored
        if waiting:
            time.sleep(_WAIT_POLL_S)
    return [], stored


def run_sweep(
    spec: ExperimentSpec,
    db_path: str | Path,
    workers: int = 1,
    events: RunnerEvents | None = None,
    vectorize: Vectorize = "auto",
    *,
    backend: Backend = "local",
    address: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> SweepResult:
    """Run every run of `spec` not already finished in the store at `db_path`; return what happened.

    `vectorize`: ``"auto"`` trains compatible runs as vectorized groups, ``"off"`` one by one.
    `backend`: ``"local"`` (this machine's processes) or ``"ray"`` (`address` of a cluster, or a
    local instance with `workers` CPUs).
    """
    runs, todo = plan(spec, db_path)
    skipped = [run.run_id for run in runs if run not in todo]
    check_data(todo)
    outcomes, elsewhere = _execute(todo, db_path, workers, events, vectorize, None, backend, address, lease_s)
    return SweepResult(runs, skipped, outcomes, elsewhere)


def execute_run(
    run: ResolvedRun,
    db_path: str | Path,
    on_progress: Callable[[int, int], None] | None = None,
    observe: Observer | None = None,
) -> RunOutcome:
    """Train one run in this process and store everything it measures; return its outcome.

    A run interrupted here (Ctrl-C, kill -9) stays ``running`` in the store and is redone from
    scratch by the next sweep; its partial rows are replaced, never duplicated. An error inside
    training marks the run ``failed`` with the message, keeping the rows recorded before it.
    With `observe`, the model is built exactly as the trainer would (same seed, same weights)
    and the observer's hooks are on it during training; its points are stored as metrics.
    """
    progress = (lambda run_id, done, total: on_progress(done, total)) if on_progress else None
    outcomes = execute_runs([run], db_path, 1, RunnerEvents(on_progress=progress), "off", observe)
    if run.run_id not in outcomes:
        raise StoreError(
            f"run {run.run_id!r} is already stored in {db_path}; skip it (plan) or use another database to run it again"
        )
    return outcomes[run.run_id]


def execute_group(
    runs: Sequence[ResolvedRun],
    db_path: str | Path,
    on_progress: Callable[[str, int, int], None] | None = None,
    on_end: Callable[[ResolvedRun, RunOutcome], None] | None = None,
) -> dict[str, RunOutcome]:
    """Train `runs` (one `group_key`) as one vectorized group in this process, each stored as its own run.

    Every member ends in the store as soon as it ends (a diverged member at once), so a group
    killed midway leaves its ended members stored and the others ``running``: the next sweep
    redoes only those. An error inside training marks the members still training ``failed``.
    """
    events = RunnerEvents(on_progress=on_progress, on_end=on_end)
    with Recorder(db_path, events) as recorder:
        dispatcher = local.Dispatcher([list(runs)], recorder)
        local.run_inline(dispatcher)
        return dict(recorder.outcomes)
