"""Ioffe & Szegedy (2015), Figure 1: MNIST 784-100-100-100-10 sigmoid nets with and without BN.

(a) test accuracy against training steps: the BN net is higher sooner; (b, c) the 15th/50th/85th
percentiles of one typical last-hidden-layer sigmoid's input over training: drifting without BN,
stable with it. The paper trains 50,000 steps of 60 examples from "small random Gaussian" weights
and does not state the optimizer, learning rate or init std: `BUDGETS` chooses them (plain SGD,
which the paper's MNIST section does not contradict) and the full variant repeats the comparison
over a small range of learning rates and init stds.

The unit's percentiles are not a probe column (the probe pools every unit of a layer), so an
observer (`observe_unit`) records them from the training mini-batches into the run's metrics;
the probe's pooled percentiles of the same layer are compared too.

The package runs in the order of its modules: `settings` (the paper's set-up and our budgets),
`measurement` (the observer and what is read back), `comparison` (the table and notes),
`figures` (the PNGs).
"""

from __future__ import annotations

import functools

from ....spec import expand
from ....store import Store
from ..base import ReproductionContext, ReproductionResult, choose_mnist, run_observed
from .comparison import compare, notes
from .figures import draw_accuracy, draw_percentiles, draw_range
from .measurement import (
    Measured,
    accuracy_at,
    accuracy_curve,
    layer_percentiles,
    measure,
    observe_unit,
    steps_to_reach,
    unit_metric,
    unit_percentiles,
    window_drift,
)
from .settings import (
    BUDGETS,
    CITATION,
    LAST_HIDDEN,
    PERCENTILES,
    TITLE,
    UNIT,
    Budget,
    Setting,
    setting_spec,
    settings_table,
)

__all__ = [
    "Setting",
    "Budget",
    "BUDGETS",
    "TITLE",
    "CITATION",
    "PERCENTILES",
    "observe_unit",
    "setting_spec",
    "settings_table",
    "window_drift",
    "accuracy_at",
    "accuracy_curve",
    "steps_to_reach",
    "unit_percentiles",
    "layer_percentiles",
    "unit_metric",
    "Measured",
    "measure",
    "compare",
    "notes",
    "reproduce",
]


def reproduce(context: ReproductionContext, budget: Budget | None = None) -> ReproductionResult:
    """Train the paper's two nets (and, in full, the range of settings), compare with Figure 1, draw it.

    Returns the comparisons (see `compare`), three or four PNG figures in ``context.figure_dir``,
    the settings chosen and which data ran. Runs are stored in ``context.db`` and reused.
    `budget` overrides the quick/full one (benchmarks/fig1.py times the core alone).
    """
    budget = budget or BUDGETS["quick" if context.quick else "full"]
    dataset, data_used = choose_mnist(context.data_dir)
    settings = [budget.main, *budget.others]
    runs = {setting: expand(setting_spec(setting, budget, dataset, context.data_dir)) for setting in settings}
    context.on_stage(f"training {2 * len(settings)} runs on {dataset}")
    observer = functools.partial(observe_unit, layer=LAST_HIDDEN, unit=UNIT, every=budget.record_every)
    run_observed([run for group in runs.values() for run in group], context, observer)
    context.on_stage("comparing with Figure 1 and drawing it")
    with Store(context.db, readonly=True) as store:
        measured = [measure(setting, runs[setting], store) for setting in settings]
    main, others = measured[0], measured[1:]
    folder = context.figure_dir
    figures = [
        draw_accuracy(main, folder, paper_axis=not context.quick),
        draw_percentiles(main, folder, "unit"),
        draw_percentiles(main, folder, "layer"),
    ]
    if others:
        figures.append(draw_range(measured, folder))
    return ReproductionResult(
        name=context.name,
        title=TITLE,
        citation=CITATION,
        comparisons=compare(main, others, dataset),
        figures=figures,
        data_used=data_used,
        settings=settings_table(budget),
        notes=notes(main),
        run_ids=[run.run_id for group in runs.values() for run in group],
    )
