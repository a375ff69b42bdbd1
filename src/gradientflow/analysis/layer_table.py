"""The per-layer table of a diagnosis: from probe rows to one row per layer and recorded step, and then to
the state of each layer at initialization, at the end of the run, and at its worst recorded step.

A *table layer* is an activation input (a module, a functional call found by the probe, or a
`gradientflow.tap`), in forward order, carrying the weight modules that feed it; weight modules
after the last activation form `output` rows, and taps named ``<block>:stream`` (the residual
stream after a block) form their own group. Pure pandas: no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import ModelError

__all__ = [
    "STREAM_SUFFIX",
    "STATE_COLUMNS",
    "layer_frame",
    "layer_states",
    "weight_norm_change",
    "nothing_to_judge",
]

STREAM_SUFFIX = ":stream"
_JUDGED_KINDS = ("activation", "tap")
_WEIGHT_KINDS = ("weight", "norm")
#: Quantities shown at initialization and at the end of the run (first and last recorded step).
_AT_BOTH_ENDS = (
    "grad_rms",
    "relative_grad",
    "gain",
    "saturated_frac",
    "dead_units_frac",
    "update_ratio",
    "pre_mean",
    "pre_std",
)
#: Quantities whose worst recorded step is shown, and how "worse" is scored (higher is worse).
_WORST = {
    # a gradient is as bad below the group's last layer as above it: distance from 1 in decades
    "relative_grad": lambda values: np.abs(np.log10(values)),
    "saturated_frac": lambda values: values,
    "dead_units_frac": lambda values: values,
    "update_ratio": lambda values: values,
}
STATE_COLUMNS: tuple[str, ...] = (
    *(f"{q}_{when}" for q in _AT_BOTH_ENDS for when in ("init", "end")),
    *(c for q in _WORST for c in (f"{q}_worst", f"{q}_worst_step")),
    "grad_rms_worst",  # grad_rms at the step where relative_grad is worst
)


def _structure(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Return (one row per table layer: layer, order, role, group, activation, weights) and weight -> layer."""
    ids = frame.drop_duplicates("layer").sort_values("order")
    rows: list[dict[str, Any]] = []
    owner: dict[str, str] = {}
    pending: list[str] = []
    tapped = [name[: -len(STREAM_SUFFIX)] for name in ids["layer"] if name.endswith(STREAM_SUFFIX)]
    # a tapped block inside another (GPT-2's mlp inside its block) is a branch's output, not the stream
    nested = {b for b in tapped if any(b.startswith(outer + ".") for outer in tapped)}
    blocks = [b for b in tapped if b not in nested]
    for item in ids.itertuples(index=False):
        if item.kind in _WEIGHT_KINDS:
            pending.append(item.layer)
            continue
        if item.kind not in _JUDGED_KINDS or (
            item.layer.endswith(STREAM_SUFFIX) and item.layer[: -len(STREAM_SUFFIX)] in nested
        ):
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
    active = frame[frame["kind"].isin(_JUDGED_KINDS)]
    stats = ["grad_rms", "saturated_frac", "dead_units_frac", "pre_mean", "pre_std", "nonfinite_count"]
    rows = active[["step", "layer", *stats]]
    weights = frame[frame["kind"].isin(_WEIGHT_KINDS)][["step", "layer", "update_ratio"]].copy()
    weights["layer"] = weights["layer"].map(owner)
    updates = weights.groupby(["step", "layer"], as_index=False)["update_ratio"].max()
    steps = pd.DataFrame({"step": sorted(frame["step"].unique())})
    table = steps.merge(structure, how="cross").merge(rows, on=["step", "layer"], how="left")
    table = table.merge(updates, on=["step", "layer"], how="left").sort_values(["step", "order"], ignore_index=True)
    grad = table["grad_rms"]
    by_group = table.groupby(["step", "group"], sort=False)["grad_rms"]
    last = by_group.transform(lambda g: g.dropna().iloc[-1] if g.notna().any() else np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["relative_grad"] = grad / last
        table["gain"] = grad / by_group.shift(-1)
    return table


def _at_step(table: pd.DataFrame, step: int, when: str) -> pd.DataFrame:
    rows = table[table["step"] == step].set_index("layer")[list(_AT_BOTH_ENDS)]
    return rows.add_suffix(f"_{when}")


def _worst(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Return per layer the worst recorded value of `column` and its step (NaN where never measured)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        score = pd.Series(_WORST[column](table[column].to_numpy(dtype=float)), index=table.index)
    measured = score.notna()
    at = score.where(measured, -np.inf).groupby(table["layer"], sort=False).idxmax()
    rows = table.loc[at.to_numpy(), ["layer", column, "step", "grad_rms"]].set_index("layer")
    rows = rows.astype(float)
    rows[~measured.groupby(table["layer"], sort=False).any().reindex(rows.index).to_numpy()] = np.nan
    out = rows.rename(columns={column: f"{column}_worst", "step": f"{column}_worst_step"})
    if column == "relative_grad":
        return out.rename(columns={"grad_rms": "grad_rms_worst"})
    return out.drop(columns="grad_rms")


def layer_states(table: pd.DataFrame) -> pd.DataFrame:
    """Return one row per table layer (forward order) with its state at initialization, at the end and at worst.

    `table` is `layer_frame`'s. Columns: layer, order, role, group, activation, weights, then
    ``<q>_init`` and ``<q>_end`` (the value at the first and the last recorded step) for grad_rms,
    relative_grad, gain, saturated_frac, dead_units_frac, update_ratio, pre_mean, pre_std, and
    ``<q>_worst`` with ``<q>_worst_step`` for relative_grad (furthest from 1 in either direction),
    saturated_frac, dead_units_frac and update_ratio (largest); grad_rms_worst is grad_rms at
    relative_grad's worst step. Values are single recorded steps, not medians: a layer whose
    gradient is 450x the last layer's at step 0 shows 450 in relative_grad_init.
    """
    steps = sorted(table["step"].unique())
    layers = table.drop_duplicates("layer").set_index("layer")[["order", "role", "group", "activation", "weights"]]
    parts = [layers, _at_step(table, steps[0], "init"), _at_step(table, steps[-1], "end")]
    parts += [_worst(table, column) for column in _WORST]
    out = pd.concat(parts, axis=1)
    out.index.name = "layer"
    return out.reset_index().sort_values("order", ignore_index=True)


def weight_norm_change(path: pd.DataFrame, frame: pd.DataFrame, onset: int) -> tuple[float, float, int]:
    """Return (median, product) over the path's weights of ||W|| at `onset` over ||W|| at the first recorded step, and that step.

    The product is the factor by which the weights' change of scale alone multiplies a signal
    crossing the path. NaN when the frame has no weight norms for them.
    """
    names = {w for text in path["weights"] for w in str(text).split(", ") if w}
    weights = frame[frame["layer"].isin(names) & (frame["kind"] == "weight")]
    if weights.empty or "weight_norm" not in weights:
        return np.nan, np.nan, onset
    start = int(weights["step"].min())
    by_step = weights.pivot_table(index="layer", columns="step", values="weight_norm", aggfunc="first")
    if onset not in by_step.columns:
        return np.nan, np.nan, start
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = (by_step[onset] / by_step[start]).dropna()
    if ratios.empty:
        return np.nan, np.nan, start
    return float(ratios.median()), float(ratios.prod()), start


def nothing_to_judge(frame: pd.DataFrame) -> ModelError:
    """Return the error for a frame without activation or tap rows, naming the rows it has and how to opt in."""
    seen = frame.drop_duplicates("layer").sort_values("order") if not frame.empty else frame
    parts = []
    for kind, label in (("weight", "weight layer"), ("norm", "norm layer")):
        names = list(seen["layer"][seen["kind"] == kind]) if not seen.empty else []
        if names:
            listed = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
            parts.append(f"{len(names)} {label}{'s' if len(names) != 1 else ''} ({listed})")
    found = " and ".join(parts) if parts else "nothing at all (no step was recorded)"
    return ModelError(
        f"nothing to judge: the probe found no activation and no tap; it saw {found}. Verdicts are about "
        "the inputs of activations: opt one in by wrapping its input, "
        '`h = torch.relu(gradientflow.tap(z, "block1.relu", "relu"))`, or by giving your activation module '
        'an attribute `gradientflow_activation = "relu"` (on its class or the instance)'
    )
