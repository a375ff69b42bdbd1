"""The canonical study behind `gradientflow explain`: does BN "resolve" vanishing gradients, and how?

Nine claims (from a Q&A answer and Ioffe & Szegedy 2015, see `analysis.claims`) are checked on
six small sweeps over the offline mnist5k data, stored through the runner (a rerun reuses finished
runs), plus claim 9's in-process look at BN's backward pass (`studies.bn_backward`).

Modes: ``quick`` (<= 90 s on 2 cores: three seeds, short runs, depths 5 and 10), ``full`` (<= 10 min:
five seeds, longer runs, depth 20 and a depth-50 BN-ReLU net) and ``tiny`` (seconds; tests only,
its verdicts mean little). Seeds of one cell train as one vectorized group (`runner.group_runs`).

All runs of the study go through ONE process pool: a spawned worker costs ~4 s of imports on this
machine (10-20 s per pool under load), so one `runner.run_sweep(workers=2)` per experiment would
spend most of the quick budget starting processes. Skipping finished runs and storing use the
runner's own `plan` and `execute_run`, so ids, resume and stored rows are exactly `run_sweep`'s.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..analysis import claims
from ..errors import GradientflowError
from ..records import Finding, RunOutcome
from ..runner import RunnerEvents, check_data, execute_runs, plan
from ..spec import ExperimentSpec, ResolvedRun, expand, from_dict
from ..store import Store
from .bn_backward import autograd_error, measure_bn_gradients

__all__ = [
    "Mode",
    "Experiment",
    "ExplainResult",
    "study",
    "run_study",
    "compute_findings",
    "compute_results",
    "run_groups",
    "study_intro",
    "explain",
    "write_fallback_html",
]

Mode = Literal["tiny", "quick", "full"]
MODES: tuple[str, ...] = ("tiny", "quick", "full")


@dataclass(frozen=True)
class Experiment:
    """One sweep of the study; the claims its runs feed are read from `analysis.claims.CLAIMS`."""

    key: str
    title: str
    spec: ExperimentSpec

    @property
    def claims(self) -> tuple[int, ...]:
        """Ids of the claims whose checks read this experiment's runs."""
        return claims.experiments_of().get(self.key, ())


@dataclass(frozen=True)
class _Budget:
    steps: int  # training steps of the trained experiments
    every: int  # probe interval: step 0 and ~10 later points are enough for start/end comparisons
    seeds: tuple[int, ...]  # every cell runs each seed: intervals across seeds need at least 2
    init_seeds: tuple[int, ...]  # the at-init experiments (one step each): more seeds cost almost nothing
    depths: tuple[int, ...]  # claim 1's depths
    relu_depths: tuple[int, ...]  # claim 6's depths (init only, so deep is cheap)
    drift_steps: int  # claim 4 needs the distribution to have time to move
    lrs: tuple[float, ...]
    backward_steps: int


# Learning rates where the plain He-init ReLU net trains at the low end and diverges at the high end,
# so the sweep can discriminate (a plain sigmoid net trains at no rate within a few hundred steps).
_LRS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
# Claim 7's weight scales: a 16x range. Wider ones measure artefacts rather than BN: at a = 0.1 BN's
# eps (1e-5) is ~3% of the first layer's pre-BN variance, and at a = 10 the output layer (scaled too,
# and followed by no BN) saturates the softmax, which turns the gradient entering the net.
_WEIGHT_SCALES = (0.25, 1.0, 4.0)
_BUDGETS: dict[str, _Budget] = {
    "tiny": _Budget(20, 10, (0, 1), (0, 1), (5, 10), (5, 10), 40, (0.1, 3.0, 30.0), 2),
    "quick": _Budget(200, 20, (0, 1, 2), tuple(range(8)), (5, 10), (5, 10, 20), 600, _LRS, 5),
    "full": _Budget(1000, 50, (0, 1, 2, 3, 4), tuple(range(8)), (5, 10, 20), (5, 10, 20, 50), 3000, _LRS, 20),
}


def _spec(
    name: str, model: dict[str, Any], steps: int, every: int, sweep: dict[str, Any], batch: int = 60, lr: float = 0.1
) -> ExperimentSpec:
    return from_dict(
        {
            "name": f"explain-{name}",
            "model": {"arch": "mlp", "width": 100, "init": "pytorch_default", **model},
            "data": {"name": "mnist5k", "batch_size": batch},
            "optim": {"name": "sgd", "lr": lr},
            "train": {"steps": steps, "eval_every": steps},  # accuracy at init and at the end
            "probe": {"every": every},
            "sweep": sweep,
        }
    )


def study(mode: Mode = "quick") -> list[Experiment]:
    """The study's experiments in `mode` (tiny | quick | full), in the order they are run."""
    if mode not in _BUDGETS:
        raise GradientflowError(f"explain mode {mode!r} is not one of {', '.join(MODES)}")
    b = _BUDGETS[mode]
    seeds = list(b.seeds)
    norms = ["none", "batch"]
    return [
        Experiment(
            "vanishing",
            "sigmoid/tanh MLPs by depth, with and without BN, PyTorch default init",
            _spec(
                "vanishing",
                {},
                b.steps,
                b.every,
                {
                    "model.activation": ["sigmoid", "tanh"],
                    "model.depth": list(b.depths),
                    "model.norm": norms,
                    "seeds": seeds,
                },
            ),
        ),
        Experiment(
            "saturation",
            "depth-5 sigmoid/tanh MLPs with N(0,1) weights, with and without BN",
            _spec(
                "saturation",
                {"depth": 5, "init": "small_gaussian", "init_std": 1.0},
                b.steps,
                b.every,
                {"model.activation": ["sigmoid", "tanh"], "model.norm": norms, "seeds": seeds},
            ),
        ),
        Experiment(
            "drift",
            "3 x 100 sigmoid MLP, N(0, 0.01^2) init, lr 0.5 (BN paper Fig. 1 setting)",
            _spec(
                "drift",
                {"depth": 3, "init": "small_gaussian", "init_std": 0.01},
                b.drift_steps,
                b.every,
                {"model.norm": norms, "seeds": seeds},
                lr=0.5,
            ),
        ),
        Experiment(
            "learning-rate",
            "depth-5 ReLU MLP, He init, learning-rate sweep, with and without BN",
            _spec(
                "learning-rate",
                {"depth": 5, "activation": "relu", "init": "he_normal"},
                b.steps,
                b.every,
                {"model.norm": norms, "optim.lr": list(b.lrs), "seeds": seeds},
            ),
        ),
        Experiment(
            "bn-relu-depth",
            "ReLU MLPs, width 256, batch 32, He init, at initialization: BN vs none",
            _spec(
                "bn-relu-depth",
                {"activation": "relu", "width": 256, "init": "he_normal"},
                1,
                1,
                {"model.depth": list(b.relu_depths), "model.norm": norms, "seeds": list(b.init_seeds)},
                batch=32,
            ),
        ),
        Experiment(
            "weight-scale",
            "3 x 100 sigmoid MLP with initial weights scaled by a, at initialization, with and without BN",
            _spec(
                "weight-scale",
                {"depth": 3},
                1,
                1,
                {"model.weight_scale": list(_WEIGHT_SCALES), "model.norm": norms, "seeds": list(b.init_seeds)},
            ),
        ),
    ]


# --------------------------------------------------------------------------------------- running


@dataclass
class StudyRun:
    """Every run of the study per experiment, what was already stored, and how the new runs ended."""

    runs: dict[str, list[ResolvedRun]]
    skipped: list[str]
    outcomes: dict[str, RunOutcome] = field(default_factory=dict)

    @property
    def run_ids(self) -> list[str]:
        """Ids of every run of the study, without duplicates, in study order."""
        return list(dict.fromkeys(r.run_id for runs in self.runs.values() for r in runs))

    @property
    def failed(self) -> list[str]:
        """Ids of the runs that failed (an error, not a divergence)."""
        return [run_id for run_id, outcome in self.outcomes.items() if outcome.status == "failed"]


def _cost(run: ResolvedRun) -> int:
    return run.spec.train.steps * run.spec.model.depth * run.spec.model.width


def run_study(
    experiments: Sequence[Experiment], db: str | Path, workers: int = 2, events: RunnerEvents | None = None
) -> StudyRun:
    """Run every experiment's runs not yet finished in `db`, in one pool of `workers` processes."""
    events = events or RunnerEvents()
    per_experiment: dict[str, list[ResolvedRun]] = {}
    todo: dict[str, ResolvedRun] = {}
    for experiment in experiments:
        runs, missing = plan(experiment.spec, db)
        per_experiment[experiment.key] = runs
        todo.update((r.run_id, r) for r in missing)
    done = StudyRun(
        per_experiment,
        [r for r in dict.fromkeys(r.run_id for rs in per_experiment.values() for r in rs) if r not in todo],
    )
    ordered = sorted(todo.values(), key=_cost, reverse=True)  # longest first: the pool ends together
    check_data(ordered)  # a missing data set fails here, before any run starts
    done.outcomes.update(execute_runs(ordered, db, workers, events))
    return done


# -------------------------------------------------------------------------------------- findings


@dataclass(frozen=True)
class BackwardMeasurements:
    """Claim 9's numbers: the numpy-vs-autograd error and the per-layer gradient frame."""

    autograd_error: float
    gradients: pd.DataFrame


def measure_backward(mode: Mode = "quick") -> BackwardMeasurements:
    """Run claim 9's in-process measurements (seconds)."""
    return BackwardMeasurements(autograd_error(), measure_bn_gradients(_BUDGETS[mode].backward_steps))


def _claim_data(
    store: Store, experiments: Sequence[Experiment], backward: BackwardMeasurements | None
) -> dict[int, claims.ClaimData]:
    """Each claim's runs and frames, read once from `store`."""
    ids = {e.key: [r.run_id for r in expand(e.spec)] for e in experiments}
    every = list(dict.fromkeys(i for v in ids.values() for i in v))
    runs_all = store.runs_frame()
    runs_all = runs_all[runs_all["run_id"].isin(every)]
    stats = store.layer_stats_frame(every)
    metrics = store.metrics_frame(every)
    data: dict[int, claims.ClaimData] = {}
    for row in claims.CLAIMS:
        wanted = {i for key in row.experiments for i in ids.get(key, [])}
        if row.experiments and not wanted:
            continue  # its experiments are not part of this study
        runs = runs_all[runs_all["run_id"].isin(wanted)]
        if not row.experiments and backward is None:
            continue
        data[row.id] = claims.ClaimData(
            runs,
            stats[stats["run_id"].isin(wanted)],
            metrics[metrics["run_id"].isin(wanted)],
            backward.gradients if backward is not None else None,
            backward.autograd_error if backward is not None else None,
        )
    return data


def compute_results(
    store: Store, experiments: Sequence[Experiment], backward: BackwardMeasurements | None = None
) -> list[claims.ClaimResult]:
    """Every claim of `analysis.claims.CLAIMS` checked on the stored runs (claim 9 only with `backward`)."""
    return claims.check_claims(_claim_data(store, experiments, backward))


def compute_findings(
    store: Store, experiments: Sequence[Experiment], backward: BackwardMeasurements | None = None
) -> list[Finding]:
    """The flat `Finding` of each claim (means only), as tables and older readers take them."""
    return [r.finding for r in compute_results(store, experiments, backward)]


# ------------------------------------------------------------------------------------------ output


def write_fallback_html(findings: Sequence[Finding], output: Path, title: str) -> Path:
    """A minimal page of the findings table, for when `gradientflow.report` is not installed."""
    rows = []
    for f in findings:
        numbers = "<br>".join(f"{html.escape(k)}: {v:.4g}" for k, v in f.measurements.items())
        rows.append(
            f"<tr><td>{f.claim_id}</td><td>{html.escape(f.claim)}</td><td>{html.escape(f.verdict)}</td>"
            f"<td>{html.escape(f.summary)}</td><td><small>{numbers}</small></td><td><small>{html.escape(f.rule)}</small></td></tr>"
        )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><table border='1' cellpadding='4'><tr><th>#</th><th>claim</th><th>verdict</th>"
        f"<th>summary</th><th>measurements</th><th>rule</th></tr>{''.join(rows)}</table></body></html>"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    return output


TITLE = "Does batch normalization resolve vanishing gradients? Nine claims, measured"


def study_intro(mode: str, seeds: int) -> str:
    """The page's one-paragraph description of the study (trusted HTML)."""
    return (
        "<p>Each claim below comes from a Q&amp;A answer on how batch normalization helps with vanishing "
        "gradients, or from Ioffe &amp; Szegedy (2015), which it quotes. The verdicts are computed from the "
        f"measured numbers by the stated rules; runs are MLPs on 5,000 MNIST digits ({html.escape(mode)} study, "
        f"{seeds} seeds per cell).</p>"
    )


@dataclass(frozen=True)
class ExplainResult:
    """What `explain` produced: results per claim, the page written, whether the full report was used, timings (s)."""

    results: list[claims.ClaimResult]
    html_path: Path
    used_report: bool
    study: StudyRun
    seconds: dict[str, float]

    @property
    def findings(self) -> list[Finding]:
        """The flat record of each claim."""
        return [r.finding for r in self.results]


def run_groups(experiments: Sequence[Experiment], study_run: StudyRun) -> list[tuple[str, str, list[str]]]:
    """(experiment key, title, run ids) per experiment, for the page's grouped runs table."""
    return [(e.key, e.title, [r.run_id for r in study_run.runs.get(e.key, [])]) for e in experiments]


def explain(
    output: Path,
    db: Path | None = None,
    mode: Mode = "quick",
    workers: int = 2,
    events: RunnerEvents | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> ExplainResult:
    """Run the study in `mode`, check the claims, write ``output/index.html``; see `ExplainResult`."""
    stage = on_stage or (lambda text: None)
    db = db or output / "explain.db"
    output.mkdir(parents=True, exist_ok=True)
    experiments = study(mode)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    stage("training the study's runs")
    study_run = run_study(experiments, db, workers, events)
    seconds["runs"] = time.perf_counter() - start
    stage("claim 9: BN's backward pass")
    start = time.perf_counter()
    backward = measure_backward(mode)
    seconds["bn backward"] = time.perf_counter() - start
    start = time.perf_counter()
    with Store(db, readonly=True) as store:
        data = _claim_data(store, experiments, backward)
        results = claims.check_claims(data)
        seconds["claims"] = time.perf_counter() - start
        stage("writing the page")
        start = time.perf_counter()
        path = output / "index.html"
        try:
            from ..report import render_explain_page
        except ImportError:
            render_explain_page = None  # type: ignore[assignment]
        if render_explain_page is not None:
            render_explain_page(
                store,
                results,
                data,
                run_groups(experiments, study_run),
                path,
                title=TITLE,
                intro_html=study_intro(mode, len(_BUDGETS[mode].seeds)),
            )
        else:
            write_fallback_html([r.finding for r in results], path, TITLE)
    seconds["page"] = time.perf_counter() - start
    return ExplainResult(results, path, render_explain_page is not None, study_run, seconds)
