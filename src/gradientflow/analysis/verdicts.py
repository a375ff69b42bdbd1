"""Per-layer verdicts over a probe frame: healthy, vanishing, exploding, saturated, dead, unstable updates.

Every threshold is relative and scale-free and lives in `Thresholds` (calibration: docs/diagnose.md):
gradients are compared with the gradient at the last layer of the same group *at the same step*
(so the loss's scale cancels), activations by fractions of elements or units, updates by
``update_ratio`` = ||dW|| / ||W||. The table's rows are activation inputs (modules, functional calls
and taps) in forward order, each carrying the weight modules that feed it; taps named
``<block>:stream`` are the residual stream after a block and form their own group, so the stream
and the branches are judged separately (see `layer_table`).

A problem counts from its *onset*: the first recorded step from which it shows on most of the
next `window` records. The root problem is the one whose onset comes first. Within one step the
forward/backward pass (saturated, dead, vanishing, exploding) comes before that step's update
(unstable updates): a gradient that explodes at initialization explains huge first updates, not
the other way round. The run is also judged over its first and its last `window` records, so a
run that starts healthy and collapses late says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..activation_families import BOUNDED, RELU_LIKE
from .diagnosis import TABLE_COLUMNS, VERDICT_COLUMNS, Diagnosis, Problem
from .layer_table import STREAM_SUFFIX, layer_frame, layer_states, nothing_to_judge, weight_norm_change

__all__ = [
    "Thresholds",
    "THRESHOLDS",
    "VERDICTS",
    "PROBLEMS",
    "STREAM_SUFFIX",
    "BOUNDED",
    "RELU_LIKE",
    "TABLE_COLUMNS",
    "VERDICT_COLUMNS",
    "Problem",
    "Diagnosis",
    "layer_frame",
    "diagnose_frame",
]

#: Ties within one step are broken in this order: a dead or saturated layer explains a vanishing gradient.
PROBLEMS: tuple[str, ...] = ("dead", "saturated", "vanishing", "exploding", "unstable updates")
VERDICTS: tuple[str, ...] = ("healthy", *PROBLEMS)
_BACKWARD = frozenset({"vanishing", "exploding"})  # located going back from the output
_MEDIAN_COLUMNS = (
    "grad_rms",
    "relative_grad",
    "saturated_frac",
    "dead_units_frac",
    "update_ratio",
    "pre_mean",
    "pre_std",
)


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


def _needed(steps: list[int], th: Thresholds) -> int:
    # a majority of a full window: a flag on the last record alone is unconfirmed
    return len(steps[: th.window]) // 2 + 1


def _first_confirmed(flagged: np.ndarray, catastrophic: np.ndarray | None, needed: int, window: int) -> np.ndarray:
    """Return per column of the (steps x columns) bool array the index of the onset, or -1.

    The onset is the first flagged row from which at least `needed` of the next `window` rows are
    flagged; a `catastrophic` row counts at once.
    """
    counts = np.vstack([np.zeros((1, flagged.shape[1]), dtype=int), np.cumsum(flagged, axis=0)])
    ahead = np.minimum(np.arange(flagged.shape[0]) + window, flagged.shape[0])
    confirmed = flagged & ((counts[ahead] - counts[:-1]) >= needed)
    if catastrophic is not None:
        confirmed |= flagged & catastrophic
    return np.where(confirmed.any(axis=0), confirmed.argmax(axis=0), -1)


def _onsets(table: pd.DataFrame, flags: pd.DataFrame, th: Thresholds) -> dict[str, int]:
    """Return problem -> first recorded step where it appears and mostly persists over `th.window` steps."""
    steps = sorted(table["step"].unique())
    per_step = flags.groupby(table["step"]).any().reindex(steps)
    catastrophic = per_step["catastrophic"].to_numpy()[:, None]
    onsets: dict[str, int] = {}
    for problem in PROBLEMS:
        extra = catastrophic if problem == "unstable updates" else None
        at = _first_confirmed(per_step[[problem]].to_numpy(), extra, _needed(steps, th), th.window)[0]
        if at >= 0:
            onsets[problem] = int(steps[at])
    return onsets


def _layer_onsets(table: pd.DataFrame, flags: pd.DataFrame, th: Thresholds) -> pd.DataFrame:
    """Return layer x problem: the onset step of each problem at each layer (NaN where it never counts)."""
    steps = sorted(table["step"].unique())
    layers = list(table.drop_duplicates("layer")["layer"])

    def grid(column: str) -> np.ndarray:
        wide = flags[column].groupby([table["step"], table["layer"]]).any().unstack("layer")
        values: np.ndarray = wide.reindex(index=steps, columns=layers).fillna(False).to_numpy(dtype=bool)
        return values

    catastrophic = grid("catastrophic")
    out = {}
    for problem in PROBLEMS:
        extra = catastrophic if problem == "unstable updates" else None
        at = _first_confirmed(grid(problem), extra, _needed(steps, th), th.window)
        out[problem] = np.where(at >= 0, np.asarray(steps, dtype=float)[np.maximum(at, 0)], np.nan)
    return pd.DataFrame(out, index=pd.Index(layers, name="layer"))


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


def _window_hits(table: pd.DataFrame, flags: pd.DataFrame, steps: list[int]) -> pd.DataFrame:
    inside = table["step"].isin(steps)
    return _layer_hits(table[inside], flags[inside])


def _summary(table: pd.DataFrame, flags: pd.DataFrame, steps: list[int]) -> pd.DataFrame:
    """Return one row per layer with medians over `steps` and the layer's hits there (what causes read)."""
    inside = table["step"].isin(steps)
    window_table = table[inside]
    medians = window_table.groupby("layer", sort=False)[list(_MEDIAN_COLUMNS)].median()
    first = window_table.drop_duplicates("layer").set_index("layer")
    out = first[["order", "role", "group", "activation", "weights"]].join(medians)
    # the backward gain of the medians: per-step gains of a noisy layer would not multiply up
    out["gain"] = out["grad_rms"] / out.groupby("group", sort=False)["grad_rms"].shift(-1)
    out = out.join(_layer_hits(window_table, flags[inside]).add_prefix("hit:"))
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
    problem: str, first: str, summary: pd.DataFrame, frame: pd.DataFrame, th: Thresholds, onset: int
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
    median, product, start = weight_norm_change(path, frame, onset)
    # a late problem whose weights changed scale during training: the training, not the init, moved them there
    if onset > start and (product < 0.5 if problem == "vanishing" else product > 2.0):
        evidence["weight_norm_ratio"] = median
        evidence["weight_norm_product"] = product
        direction = "shrank" if problem == "vanishing" else "grew"
        return (
            f"the weights {direction} during training: by step {onset} each weight on the path has about {median:.2g} x "
            f"its norm at step {start} ({product:.2g} x multiplied over the path); {where}",
            "weights_shrank" if problem == "vanishing" else "weights_grew",
            evidence,
        )
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
    problem: str,
    first: str,
    summary: pd.DataFrame,
    frame: pd.DataFrame,
    th: Thresholds,
    diverged_at: int | None,
    onset: int,
) -> tuple[str, str, dict[str, float]]:
    """Return (likely cause in one sentence, its code, the numbers behind it)."""
    if problem in _BACKWARD:
        return _gradient_cause(problem, first, summary, frame, th, onset)
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
    end_hits: pd.DataFrame,
) -> Problem:
    summary = _summary(table, flags, _window(table, onset, th))
    first, layers = _first_layer(summary, problem)
    cause, code, evidence = _cause(problem, first, summary, frame, th, diverged_at, onset)
    return Problem(problem, first, onset, layers, cause, code, evidence, at_end=bool(end_hits[problem].any()))


def _time_key(problem: str, onset: int) -> tuple[int, int, int]:
    # within a step the forward/backward pass comes before the update
    phase = 1 if problem == "unstable updates" else 0
    return (onset, phase, PROBLEMS.index(problem))


def _run_verdict(hits: pd.DataFrame) -> str:
    return next((p for p in PROBLEMS if hits[p].any()), "healthy")


def diagnose_frame(
    frame: pd.DataFrame, thresholds: Thresholds = THRESHOLDS, diverged_at: int | None = None
) -> Diagnosis:
    """Return the `Diagnosis` of a probe frame (one row per step and layer, as `Probe.frame()` gives).

    `diverged_at` is the step whose loss became non-finite, if any (it makes the run unstable at
    the previous update unless a problem showed earlier). Pure and deterministic. Raises
    ModelError when the frame has no activation or tap row (naming what it does have).
    """
    if frame.empty or not frame["kind"].isin(["activation", "tap"]).any():
        raise nothing_to_judge(frame)
    th = thresholds
    table = layer_frame(frame)
    flags = _flags(table, th)
    steps = sorted(int(s) for s in table["step"].unique())
    start_steps, end_steps = steps[: th.window], steps[-th.window :]
    start_hits, end_hits = _window_hits(table, flags, start_steps), _window_hits(table, flags, end_steps)
    onsets = _onsets(table, flags, th)
    if diverged_at is not None and "unstable updates" not in onsets:
        recorded = [s for s in steps if s < diverged_at]
        onsets["unstable updates"] = int(recorded[-1] if recorded else steps[0])
    ordered = sorted(onsets, key=lambda p: _time_key(p, onsets[p]))
    found = [_problem(p, onsets[p], table, flags, frame, th, diverged_at, end_hits) for p in ordered]
    return Diagnosis(
        verdict=found[0].verdict if found else "healthy",
        problem=found[0] if found else None,
        others=tuple(found[1:]),
        table=_public(table, flags, th, start_hits, end_hits),
        window=(steps[0], steps[-1]),
        start=_run_verdict(start_hits),
        end=_run_verdict(end_hits),
        start_steps=(start_steps[0], start_steps[-1]),
        end_steps=(end_steps[0], end_steps[-1]),
    )


def _first_problem(onsets: pd.Series) -> tuple[str, float]:
    """Return a layer's first problem in time and its onset step (ties as for the root), or ("healthy", NaN)."""
    found = [(p, float(step)) for p, step in onsets.items() if not np.isnan(step)]
    if not found:
        return "healthy", np.nan
    return min(found, key=lambda item: _time_key(str(item[0]), int(item[1])))


def _public(
    table: pd.DataFrame, flags: pd.DataFrame, th: Thresholds, start_hits: pd.DataFrame, end_hits: pd.DataFrame
) -> pd.DataFrame:
    """Return the per-layer table: states at init, end and worst, the verdicts at start and end, the first problem."""
    states = layer_states(table).set_index("layer")
    onsets = _layer_onsets(table, flags, th).reindex(states.index)
    states["verdict_start"] = start_hits.apply(_verdict, axis=1).reindex(states.index).fillna("healthy")
    states["verdict_end"] = end_hits.apply(_verdict, axis=1).reindex(states.index).fillna("healthy")
    first = [_first_problem(onsets.loc[layer]) for layer in states.index]
    states["verdict"] = [verdict for verdict, _ in first]
    states["onset"] = [step for _, step in first]
    return states.reset_index()[list(TABLE_COLUMNS)]
