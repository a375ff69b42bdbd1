"""Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz (2019): gradients explode at init in deep BN nets.

"A Mean Field Theory of Batch Normalization" (ICLR 2019) shows that a plain fully connected net
with BatchNorm before every nonlinearity has, at initialization, a squared gradient norm that
grows by a factor lambda(B) > 1 per layer toward the input, whatever the init, with lambda
depending on the batch size B (BN-ReLU: 1.788 at B = 8, 1.522 at 32, -> pi/(pi-1); BN-linear:
(B-2)/(B-3)). We measure the per-layer grad_rms of deep (>= 50 layers), 512-wide Linear -> BN ->
phi nets at step 0 and fit the growth rate over the layers away from both ends.

Every net is an ordinary one-step run of the lab (stored in the reproduction's database, so
`gradientflow report --db ...` draws them with the theory's dashed lines); only step 0 (the
initialization) is read. Inputs are Gaussian (synthetic_teacher): the theory assumes generic
inputs, and BN reaches its batch fixed point after one layer, so the data set does not matter.

The package runs in the order of its modules: `settings` (the paper's set-up and our budgets),
`measurement` (what is measured), `comparison` (the table and notes), `figures` (the PNGs).
"""

from __future__ import annotations

from ....errors import GradientflowError
from ....spec import expand
from ....store import Store
from ...explain import Experiment, run_study
from ..base import ReproductionContext, ReproductionResult
from .comparison import deviation_notes, excess_notes, explosion_row, rate_rows
from .figures import draw_profiles, draw_rates
from .measurement import GrowthFit, fit_growth, measure_rates, stored_profiles
from .settings import PUBLISHED_RELU, TOLERANCE, TRIM, budget_for, study_specs

__all__ = [
    "PUBLISHED_RELU",
    "TOLERANCE",
    "GrowthFit",
    "fit_growth",
    "study_specs",
    "stored_profiles",
    "measure_rates",
    "reproduce",
]


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Run the study (or reuse stored runs), fit the rates, draw the figures; see the module docstring."""
    specs = study_specs(context.quick)
    b = budget_for(context.quick)
    count = sum(len(expand(spec)) for spec in specs)
    context.on_stage(f"{count} one-step runs: depth {b.depth}, width {b.width}, B in {list(b.batches)}")
    # In the quick variant the runs take seconds: spawning workers would cost more than it saves.
    workers = 1 if context.quick else context.workers
    experiments = [Experiment(spec.name, "BN nets at init", spec) for spec in specs]
    study = run_study(experiments, context.db, workers, context.events)
    if study.failed:
        raise GradientflowError(
            f"{len(study.failed)} run(s) failed: {', '.join(study.failed)}; see `gradientflow runs --db {context.db}` for their errors"
        )
    with Store(context.db, readonly=True) as store:
        profiles = stored_profiles(store, specs)
    fits = measure_rates(profiles)
    context.on_stage("drawing figures")
    figures = [
        draw_profiles(profiles, context.figure_dir / "grad_norm_by_layer.png", TRIM),
        draw_rates(fits, context.figure_dir / "rate_vs_lambda.png", PUBLISHED_RELU),
    ]
    comparisons = [explosion_row(profiles), *rate_rows(fits)]
    notes = [
        *deviation_notes(fits),
        *excess_notes(fits),
        f"Fit: least squares of the seed-averaged log grad_rms^2 against layer over layers {TRIM + 1}..{b.depth - TRIM}; "
        "± is the standard error over seeds (each seed a new net and batch).",
    ]
    settings = {
        "depth, width": f"{b.depth} hidden layers of {b.width} (Linear -> BatchNorm -> phi), gamma = 1, beta = 0, PyTorch's eps = 1e-5",
        "init": "W ~ N(0, 1/fan_in) (lecun_normal); BN makes the rate independent of the weight scale",
        "samples": "seeds per (activation, B): "
        + ", ".join(f"{a} {len(s)}" for a, s in b.seeds.items())
        + "; each seed a new net and a new batch of Gaussian inputs",
        "measured quantity": "grad_rms of each activation's input (BN output) at step 0; same per-layer rate as the pre-BN gradient away from the ends",
    }
    return ReproductionResult(
        name=context.name,
        title="Yang et al. 2019: gradient explosion at initialization in deep batch-normalized nets",
        citation="G. Yang, J. Pennington, V. Rao, J. Sohl-Dickstein, S. S. Schoenholz. A Mean Field Theory of Batch Normalization. ICLR 2019.",
        comparisons=comparisons,
        figures=figures,
        data_used="synthetic Gaussian inputs (synthetic_teacher, 256 features): the theory assumes generic inputs and BN reaches its batch fixed point after one layer, so MNIST is not needed",
        settings=settings,
        notes=notes,
        run_ids=study.run_ids,
    )
