"""Plain records passed between stages: the only contract between probe, trainer, store and reports.

Standard library only. A per-layer statistics table is a sequence of rows whose columns are
`LAYER_ID_COLUMNS` followed by numeric columns from `LAYER_STAT_COLUMNS` (missing values are NaN);
extra percentile columns (``pre_p<q>``) may follow when a probe is configured with other percentiles.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "LAYER_ID_COLUMNS",
    "LAYER_STAT_COLUMNS",
    "DEFAULT_PERCENTILES",
    "HISTOGRAM_COLUMNS",
    "RUN_STATUSES",
    "RunStatus",
    "LayerKind",
    "percentile_column",
    "MetricPoint",
    "RunInfo",
    "RunOutcome",
    "Verdict",
    "Finding",
]

#: Percentiles of pre-activations recorded by default: those of Ioffe & Szegedy (2015), Figure 1.
DEFAULT_PERCENTILES: tuple[float, ...] = (15.0, 50.0, 85.0)

LayerKind = Literal["activation", "tap", "weight", "norm"]

#: Identity of a per-layer row: the optimizer step (0-based), the qualified module name (a second
#: call of the same module in one forward pass is ``name#1``), its position in forward execution,
#: what kind of row it is, the module's class name and the activation's name (activation rows only).
LAYER_ID_COLUMNS: tuple[str, ...] = ("step", "layer", "order", "kind", "module_type", "activation")


def percentile_column(q: float) -> str:
    """Return the column name for percentile `q` (in percent), e.g. 15 -> ``pre_p15``, 2.5 -> ``pre_p2.5``."""
    text = f"{q:g}"
    return f"pre_p{text}"


#: Numeric per-layer columns, in a fixed order. Units: pre_* in the pre-activation's units;
#: fractions in [0, 1]; gradient columns in loss units per pre-activation unit; ratios unitless.
LAYER_STAT_COLUMNS: tuple[str, ...] = (
    # Pre-activation distribution (activation and tap rows): over every element of the batch.
    "pre_mean",
    "pre_std",  # population std (ddof=0) over all elements
    "pre_min",
    "pre_max",
    *(percentile_column(q) for q in DEFAULT_PERCENTILES),
    "saturated_frac",  # elements whose |activation'| < saturation_eps * max |activation'|
    "dead_units_frac",  # units (features / channels) saturated for every element of the batch
    "nonfinite_count",  # NaN or Inf elements in the pre-activation
    # Gradient of the loss with respect to the pre-activation.
    "grad_rms",  # sqrt(mean(g^2)): compares layers of different sizes
    "grad_norm",  # L2 norm of the whole gradient tensor
    "grad_mean",  # mean over all elements (BN removes the batch mean of the gradient)
    "grad_std",  # population std over all elements
    # Parameters (weight and norm rows): over the weight tensor only, bias excluded.
    "weight_norm",
    "weight_grad_norm",
    "update_ratio",  # ||W_after - W_before|| / ||W_before|| over the optimizer step
    # Batch normalization (norm rows of BatchNorm modules): averages over units.
    "bn_input_mean",  # mean over units of the batch mean of the input
    "bn_input_var",  # mean over units of the batch variance (ddof=0) of the input
    "bn_gamma_norm",
    "bn_beta_norm",
    "bn_running_mean_norm",
    "bn_running_var_mean",
)

HISTOGRAM_COLUMNS: tuple[str, ...] = ("step", "layer", "quantity", "bin_left", "bin_right", "count")

RunStatus = Literal["queued", "running", "finished", "diverged", "failed"]
RUN_STATUSES: tuple[str, ...] = ("queued", "running", "finished", "diverged", "failed")


@dataclass(frozen=True)
class MetricPoint:
    """One scalar measured during a run, e.g. ``test_accuracy`` (fraction) at a step."""

    step: int
    name: str
    value: float


@dataclass(frozen=True)
class RunInfo:
    """Metadata of one run: its stable id, the spec it resolves to, and the software that ran it."""

    run_id: str
    name: str
    spec: dict[str, Any]
    seed: int
    status: RunStatus = "queued"
    versions: dict[str, str] = field(default_factory=dict)

    def with_status(self, status: RunStatus) -> RunInfo:
        """Return a copy of this record with another status."""
        return dataclasses.replace(self, status=status)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: ``finished`` or ``diverged`` (with the step), or ``failed`` (with the error)."""

    status: RunStatus
    steps_done: int
    diverged_at: int | None = None
    message: str | None = None


#: "not decided": the experiment could not discriminate (say why); "not applicable": the claim cannot
#: apply to the model measured (e.g. no tanh in it).
Verdict = Literal["supported", "not supported", "mixed", "not decided", "not applicable"]


@dataclass(frozen=True)
class Finding:
    """One claim checked against measurements: what was run, what was measured, and the verdict.

    `measurements` maps a short label to a measured number (units in the label, e.g.
    ``"grad ratio, sigmoid depth 20, no BN, init"``); `verdict` is computed from those numbers by
    the rule stated in `rule`; `summary` is one sentence generated from the same numbers.
    `run_ids` are the stored runs behind the numbers, so a report can plot them.
    """

    claim_id: int
    claim: str
    experiment: str
    rule: str
    measurements: dict[str, float]
    verdict: Verdict
    summary: str
    run_ids: tuple[str, ...] = ()
