"""Per-layer verdicts over a probe frame: healthy, vanishing, exploding, saturated, dead, unstable updates.

Every threshold is relative and scale-free and lives in `Thresholds` (calibration: docs/diagnose.md):
gradients are compared with the gradient at the last layer of the same group *at the same step*
(so the loss's scale cancels), activations by fractions of elements or units, updates by
``update_ratio`` = ||dW|| / ||W||. The table's rows are activation inputs (modules and taps) in
forward order, each carrying the weight modules that feed it; taps named ``<block>:stream`` are
the residual stream after a block and form their own group, so the stream and the branches are
judged separately.

The root problem is the one that appears first in time. Within one step the forward/backward
pass (saturated, dead, vanishing, exploding) comes before that step's update (unstable updates):
a gradient that explodes at initialization explains huge first updates, not the other way round.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..activation_families import BOUNDED, RELU_LIKE
from ..errors import ModelError

__all__ = [
    "Thresholds",
    "THRESHOLDS",
    "VERDICTS",
    "PROBLEMS",
    "STREAM_SUFFIX",
    "BOUNDED",
    "RELU_LIKE",
    "TABLE_COLUMNS",
    "Problem",
    "Diagnosis",
    "layer_frame",
    "diagnose_frame",
]

STREAM_SUFFIX = ":stream"
#: Ties within one step are broken in this order: a dead or saturated layer explains a vanishing gradient.
PROBLEMS: tuple[str, ...] = ("dead", "saturated", "vanishing", "exploding", "unstable updates")
VERDICTS: tuple[str, ...] = ("healthy", *PROBLEMS)
_BACKWARD = frozenset({"vanishing", "exploding"})  # located going back from the output


@dataclass(frozen=True)
class Thresholds:
    """The only thresholds of the verdicts; all relative. Measured margins: docs/diagnose.md."""

    vanishing_ratio: float = 1e-2  # grad_rms / grad_rms of the group's last layer below this: vanishing
    exploding_ratio: float = 1e2  # ... above this: exploding (healthy nets measured within 0.3-3)
    saturated_fraction: float = 0.5  # bounded activations: most inputs where phi' < 5% of its max
    dead_fraction: float = 0.5  # ReLU-like: half the units inactive on every example of the batch
    update_ratio: float = 0.3  # ||dW||/||W|| above this on most steps of a window: unstable (healthy nets: < 0.2)
    catastrophic_update_ratio: float = 1.0  # one update larger than the weight itself: unstable at once
    window: int = 3  # recorded steps that must mostly agree before a problem counts (noise guard)


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Problem:
    """One problem: its verdict, the first layer where it shows, when it appeared and its likely cause.

    `layer` is the first layer in the direction the failing signal travels: forward order for
    saturated, dead and unstable updates; from the output back for vanishing and exploding.
    `evidence` maps a label to a measured number (unitless ratios and fractions).
    """

    verdict: str
    layer: str
    step: int
    layers: tuple[str, ...]
    cause: str
    cause_code: str
    evidence: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (lists instead of tuples)."""
        out = asdict(self)
        out["layers"] = list(self.layers)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        """Return the problem `to_dict` described."""
        return cls(**{**data, "layers": tuple(data["layers"]), "evidence": dict(data["evidence"])})


@dataclass(frozen=True)
class Diagnosis:
    """The verdict of a run: the root problem (None when healthy), later problems, the per-layer table.

    `table` has one row per layer in forward order with the medians over `window` (first and last
    recorded step; the root problem's onset window, or the whole run when healthy).
    """

    verdict: str
    problem: Problem | None
    others: tuple[Problem, ...]
    table: pd.DataFrame
    window: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; NaN becomes None."""
        records = [{k: _jsonable(v) for k, v in row.items()} for row in self.table.to_dict("records")]
        return {
            "verdict": self.verdict,
            "problem": self.problem.to_dict() if self.problem else None,
            "others": [p.to_dict() for p in self.others],
            "window": list(self.window),
            "layers": records,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Diagnosis:
        """Return the diagnosis `to_dict` described (None back to NaN in the table)."""
        table = pd.DataFrame(data["layers"], columns=list(TABLE_COLUMNS)).fillna(value=np.nan)
        for column in ("grad_rms", "gain", "relative_grad", *_MEDIAN_COLUMNS[2:]):
            table[column] = table[column].astype(float)
        return cls(
            verdict=data["verdict"],
            problem=Problem.from_dict(data["problem"]) if data["problem"] else None,
            others=tuple(Problem.from_dict(p) for p in data["others"]),
            table=table,
            window=(int(data["window"][0]), int(data["window"][1])),
        )


_MEDIAN_COLUMNS = (
    "grad_rms",
    "relative_grad",
    "saturated_frac",
    "dead_units_frac",
    "update_ratio",
    "pre_mean",
    "pre_std",
)
TABLE_COLUMNS = (
    "layer",
    "role",
    "activation",
    "weights",
    "grad_rms",
    "gain",
    "relative_grad",
    *_MEDIAN_COLUMNS[2:],
    "verdict",
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# ------------------------------------------------------------------------------------ the table


def _structure(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Return (one row per table layer: layer, order, role, group, activation, weights) and weight -> layer."""
    ids = frame.drop_duplicates("layer").sort_values("order")
    rows: list[dict[str, Any]] = []
    owner: dict[str, str] = {}
    pending: list[str] = []
    blocks = [name[: -len(STREAM_SUFFIX)] for name in ids["layer"] if name.endswith(STREAM_SUFFIX)]
    for item in ids.itertuples(index=False):
        if item.kind in ("weight", "norm"):
            pending.append(item.layer)
            continue
        if item.layer.endswith(STREAM_SUFFIX):
            role = "stream"
        elif any(item.layer.startswith(block + ".") for block in blocks):
            role = "branch"
        else:
            role = "layer"
        for weight in pending:
            owner[weight] = item.layer
        rows.append(
            {
                "layer": item.layer,
                "order": item.order,
                "role": role,
                "activation": item.activation,
                "weights": ", ".join(pending),
            }
        )
        pending = []
    for weight in pending:  # after the last activation: the output layer(s), rows of their own
        owner[weight] = weight
        order = int(ids.loc[ids["layer"] == weight, "order"].iloc[0])
        rows.append({"layer": weight, "order": order, "role": "output", "activation": None, "weights": weight})
    structure = pd.DataFrame(rows, columns=["layer", "order", "role", "activation", "weights"])
    structure["group"] = np.where(structure["role"] == "stream", "stream", "layers")
    return structure, owner


def layer_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return one row per (recorded step, table layer) with the quantities the verdicts read.

    Columns: step, layer, order, role (layer / branch / stream / output), group, activation,
    weights (the modules feeding this layer), grad_rms, relative_grad (grad_rms over that of the
    group's last layer at the same step), gain (grad_rms over that of the next layer of the group:
    the backward gain into this layer), saturated_frac, dead_units_frac, pre_mean, pre_std,
    nonfinite_count, update_ratio (largest of the feeding weights').
    """
    structure, owner = _structure(frame)
    active = frame[frame["kind"].isin(["activation", "tap"])]
    stats = ["grad_rms", "saturated_frac", "dead_units_frac", "pre_mean", "pre_std", "nonfinite_count"]
    rows = active[["step", "layer", *stats]]
    weights = frame[frame["kind"].isin(["weight", "norm"])][["step", "layer", "update_ratio"]].copy()
    weights["layer"] = weights["layer"].map(owner)
    updates = weights.groupby(["step", "layer"], as_index=False)["update_ratio"].max()
    steps = pd.DataFrame({"step": sorted(frame["step"].unique())})
    table = steps.merge(structure, how="cross").merge(rows, on=["step", "layer"], how="left")
    table = table.merge(updates, on=["step", "layer"], how="left").sort_values(["step", "order"], ignore_index=True)
    grad = table["grad_rms"]
    by_group = table.groupby(["step", "group"], sort=False)["grad_rms"]
    last = by_group.transform(lambda g: g.dropna().iloc[-1] if g.notna().any() else np.nan)
    table["relative_grad"] = grad / last
    table["gain"] = grad / by_group.shift(-1)
    return table


# ------------------------------------------------------------------------------------ verdicts


def _flags(table: pd.DataFrame, th: Thresholds) -> pd.DataFrame:
    """Return a bool frame (same index as `table`), one column per problem."""
    with np.errstate(invalid="ignore"):
        relative = table["relative_grad"].to_numpy(dtype=float)
        updates = table["update_ratio"].to_numpy(dtype=float)
        # the readout starts small (PyTorch's default init) and its first updates are large relative to it
        # in healthy runs (measured up to 0.4, docs/diagnose.md): only a catastrophic update counts there
        persistent = np.where(table["role"].to_numpy() == "output", np.inf, th.update_ratio)
        return pd.DataFrame(
            {
                "dead": table["activation"].isin(RELU_LIKE) & (table["dead_units_frac"] >= th.dead_fraction),
                "saturated": table["activation"].isin(BOUNDED) & (table["saturated_frac"] > th.saturated_fraction),
                "vanishing": relative < th.vanishing_ratio,
                "exploding": relative > th.exploding_ratio,
                "unstable updates": (updates > persistent) | (table["nonfinite_count"].fillna(0) > 0).to_numpy(),
                "catastrophic": updates > th.catastrophic_update_ratio,
            },
            index=table.index,
        )


def _onsets(table: pd.DataFrame, flags: pd.DataFrame, th: Thresholds) -> dict[str, int]:
    """Return problem -> first recorded step where it appears and mostly persists over `th.window` steps."""
    steps = sorted(table["step"].unique())
    per_step = flags.groupby(table["step"]).any()
    needed = (
        len(steps[: th.window]) // 2 + 1
    )  # a majority of a full window: a flag on the last record alone is unconfirmed
    onsets: dict[str, int] = {}
    for problem in PROBLEMS:
        for i, step in enumerate(steps):
            if not per_step.at[step, problem]:
                continue
            hits = int(per_step.loc[steps[i : i + th.window], problem].sum())
            if hits >= needed or (problem == "unstable updates" and per_step.at[step, "catastrophic"]):
                onsets[problem] = int(step)
                break
    return onsets


def _window(table: pd.DataFrame, start: int, th: Thresholds) -> list[int]:
    steps = sorted(table["step"].unique())
    i = steps.index(start)
    return steps[i : i + th.window]


def _layer_hits(window_table: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """Return layer x problem: True where the problem is flagged on most steps of the window."""
    grouped = flags.groupby(window_table["layer"], sort=False)
    counts, catastrophic = grouped.sum(), grouped["catastrophic"].any()
    available = window_table.groupby("layer", sort=False)["step"].count()
    hits = pd.DataFrame({p: 2 * counts[p] > available for p in PROBLEMS})
    hits["unstable updates"] |= catastrophic
    return hits


def _verdict(hits: pd.Series) -> str:
    return next((p for p in PROBLEMS if hits[p]), "healthy")


def _summary(table: pd.DataFrame, flags: pd.DataFrame, steps: list[int]) -> pd.DataFrame:
    inside = table["step"].isin(steps)
    window_table = table[inside]
    medians = window_table.groupby("layer", sort=False)[list(_MEDIAN_COLUMNS)].median()
    first = window_table.drop_duplicates("layer").set_index("layer")
    out = first[["order", "role", "group", "activation", "weights"]].join(medians)
    # the backward gain of the medians: per-step gains of a noisy layer would not multiply up
    out["gain"] = out["grad_rms"] / out.groupby("group", sort=False)["grad_rms"].shift(-1)
    hits = _layer_hits(window_table, flags[inside])
    out["verdict"] = hits.apply(_verdict, axis=1)
    out = out.join(hits.add_prefix("hit:"))
    return out.reset_index().sort_values("order", ignore_index=True)


def _first_layer(summary: pd.DataFrame, problem: str) -> tuple[str, tuple[str, ...]]:
    hit = summary[summary["hit:" + problem]]
    if hit.empty:  # flagged somewhere at the onset, but on no single layer for most of the window
        hit = summary.head(1)
    layers = tuple(hit["layer"])
    position = -1 if problem in _BACKWARD else 0
    return hit["layer"].iloc[position], layers


# ------------------------------------------------------------------------------------ causes


def _path(summary: pd.DataFrame, first: str) -> pd.DataFrame:
    """Return the rows the gradient crosses from the group's last layer back to `first`."""
    row = summary[summary["layer"] == first].iloc[0]
    rows = summary[(summary["group"] == row["group"]) & (summary["order"] >= row["order"])]
    return rows[rows["role"] != "output"]


def _fraction_flagged(rows: pd.DataFrame, column: str, activations: frozenset[str], threshold: float) -> float:
    judged = rows[rows["activation"].isin(activations)]
    return float((judged[column] > threshold).mean()) if len(judged) else 0.0


def _name(activation: Any) -> str:
    return str(activation) if isinstance(activation, str) else "the activation"


def _gradient_cause(
    problem: str, first: str, summary: pd.DataFrame, frame: pd.DataFrame, th: Thresholds
) -> tuple[str, str, dict[str, float]]:
    path = _path(summary, first)
    row = path.iloc[0]
    hops = max(len(path) - 1, 1)
    per_layer = float(row["relative_grad"]) ** (1.0 / hops)  # geometric mean backward gain over the path
    evidence = {
        "relative_grad": float(row["relative_grad"]),
        "gain_per_layer": per_layer,
        "layers_crossed": float(hops),
    }
    activation = _name(path["activation"].dropna().iloc[0] if path["activation"].notna().any() else None)
    saturated = _fraction_flagged(path, "saturated_frac", BOUNDED, th.saturated_fraction)
    dead = _fraction_flagged(path, "dead_units_frac", RELU_LIKE, th.dead_fraction - 1e-12)
    where = f"grad_rms at {first} is {row['relative_grad']:.2g} x that of the last layer, about {per_layer:.2f}x per layer over {hops} layer(s)"
    if saturated > 0.5:
        evidence["saturated_frac"] = float(path["saturated_frac"].median())
        return (
            f"saturated activations: {where}; most {activation} inputs sit in its flat tails",
            "saturated_activations",
            evidence,
        )
    if dead > 0.5:
        return f"dead ReLUs: {where}; most units never fire, so no gradient passes them", "dead_relus", evidence
    if problem == "vanishing":
        slope = " (its derivative is at most 0.25)" if activation == "sigmoid" else ""
        return (
            f"weight scale too small for the depth: {where}; {activation}{slope} with these weights shrinks the gradient at every layer",
            "weight_scale_small",
            evidence,
        )
    norms = frame[frame["kind"] == "norm"]["module_type"].astype(str)
    if norms.str.startswith("BatchNorm").any() and not (summary["role"] == "stream").any():
        return (
            f"BatchNorm-induced explosion at initialization in a deep plain network (Yang et al. 2019): {where}",
            "bn_explosion",
            evidence,
        )
    return f"weight scale too large for the depth: {where}", "weight_scale_large", evidence


def _cause(
    problem: str, first: str, summary: pd.DataFrame, frame: pd.DataFrame, th: Thresholds, diverged_at: int | None
) -> tuple[str, str, dict[str, float]]:
    """Return (likely cause in one sentence, its code, the numbers behind it)."""
    if problem in _BACKWARD:
        return _gradient_cause(problem, first, summary, frame, th)
    row = summary[summary["layer"] == first].iloc[0]
    activation = _name(row["activation"])
    if problem == "saturated":
        evidence = {"saturated_frac": float(row["saturated_frac"]), "pre_std": float(row["pre_std"])}
        text = f"weight scale too large: pre-activations at {first} have std {row['pre_std']:.2g}, so {row['saturated_frac']:.0%} of {activation}'s inputs sit in its flat tails"
        return text, "weight_scale_large", evidence
    if problem == "dead":
        evidence = {
            "dead_units_frac": float(row["dead_units_frac"]),
            "pre_mean": float(row["pre_mean"]),
            "pre_std": float(row["pre_std"]),
        }
        shift = " pushed below zero by a negative bias or shift" if row["pre_mean"] < -row["pre_std"] else ""
        text = f"dead ReLUs: {row['dead_units_frac']:.0%} of the units of {first} never fire on a batch (pre-activation mean {row['pre_mean']:.2g}, std {row['pre_std']:.2g}){shift}"
        return text, "dead_relus", evidence
    ratio = float(row["update_ratio"])
    evidence = {"update_ratio": ratio}
    text = f"too high a learning rate: one step changes the weights feeding {first} ({row['weights'] or first}) by {ratio:.2g} x their norm"
    if diverged_at is not None:
        evidence["diverged_at"] = float(diverged_at)
        text += f"; the loss became non-finite at step {diverged_at}"
    return text, "learning_rate", evidence


# ------------------------------------------------------------------------------------ entry point


def _problem(
    problem: str,
    onset: int,
    table: pd.DataFrame,
    flags: pd.DataFrame,
    frame: pd.DataFrame,
    th: Thresholds,
    diverged_at: int | None,
) -> tuple[Problem, pd.DataFrame, list[int]]:
    steps = _window(table, onset, th)
    summary = _summary(table, flags, steps)
    first, layers = _first_layer(summary, problem)
    cause, code, evidence = _cause(problem, first, summary, frame, th, diverged_at)
    return Problem(problem, first, onset, layers, cause, code, evidence), summary, steps


def _time_key(problem: str, onset: int) -> tuple[int, int, int]:
    # within a step the forward/backward pass comes before the update
    phase = 1 if problem == "unstable updates" else 0
    return (onset, phase, PROBLEMS.index(problem))


def diagnose_frame(
    frame: pd.DataFrame, thresholds: Thresholds = THRESHOLDS, diverged_at: int | None = None
) -> Diagnosis:
    """Return the `Diagnosis` of a probe frame (one row per step and layer, as `Probe.frame()` gives).

    `diverged_at` is the step whose loss became non-finite, if any (it makes the run unstable at
    the previous update unless a problem showed earlier). Pure and deterministic.
    """
    if frame.empty or not frame["kind"].isin(["activation", "tap"]).any():
        raise ModelError(
            "nothing to judge: no activation module ran and nothing was tapped; wrap functional activations "
            'as `h = torch.relu(gradientflow.tap(z, "block1.relu", "relu"))`'
        )
    table = layer_frame(frame)
    flags = _flags(table, thresholds)
    onsets = _onsets(table, flags, thresholds)
    if diverged_at is not None and "unstable updates" not in onsets:
        recorded = [s for s in sorted(table["step"].unique()) if s < diverged_at]
        onsets["unstable updates"] = int(recorded[-1] if recorded else table["step"].min())
    ordered = sorted(onsets, key=lambda p: _time_key(p, onsets[p]))
    found = [_problem(p, onsets[p], table, flags, frame, thresholds, diverged_at) for p in ordered]
    if found:
        root, summary, steps = found[0]
        return Diagnosis(
            root.verdict, root, tuple(p for p, _, _ in found[1:]), _public(summary), (int(steps[0]), int(steps[-1]))
        )
    steps = sorted(int(s) for s in table["step"].unique())
    summary = _summary(table, flags, steps)
    return Diagnosis("healthy", None, (), _public(summary), (int(steps[0]), int(steps[-1])))


def _public(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[list(TABLE_COLUMNS)].reset_index(drop=True)
