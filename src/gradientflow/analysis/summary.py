"""Summaries of stored runs: the numbers `gradientflow runs` and `show` print.

The vanishing-gradient figure used throughout is the *gradient ratio*: ``grad_rms`` of the
first activation layer divided by that of the last one, at one step. Far below 1 means the
gradient shrinks on its way back to the input (vanishing); far above 1, it grows (exploding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..store import Store, spec_differences

__all__ = ["activation_rows", "gradient_ratio", "layer_summary", "run_summaries"]


def activation_rows(layer_stats: pd.DataFrame) -> pd.DataFrame:
    """Return the rows of activation inputs (module activations and taps), in forward order."""
    rows = layer_stats[layer_stats["kind"].isin(["activation", "tap"])]
    return rows.sort_values(["step", "order"])


def gradient_ratio(layer_stats: pd.DataFrame, step: int) -> float:
    """Return first-layer over last-layer ``grad_rms`` (unitless) at `step`; NaN if not recorded."""
    rows = activation_rows(layer_stats)
    rows = rows[(rows["step"] == step) & rows["grad_rms"].notna()]
    if len(rows) < 2:
        return math.nan
    return float(rows["grad_rms"].iloc[0] / rows["grad_rms"].iloc[-1])


def _final_metric(metrics: pd.DataFrame, name: str) -> float:
    rows = metrics[metrics["name"] == name]
    return float(rows.sort_values("step")["value"].iloc[-1]) if len(rows) else math.nan


def run_summaries(store: Store, run_ids: Sequence[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Return (one row per run, the spec keys that differ between those runs).

    Columns: run_id, name, status, steps_done, diverged_at, test_accuracy (fraction, last
    evaluation), grad_ratio_init (step 0) and grad_ratio_final (last recorded step), then one
    column per differing spec key.
    """
    runs = store.runs_frame()
    if run_ids is not None:
        wanted = store.resolve_run_ids(run_ids)
        runs = runs[runs["run_id"].isin(wanted)]
    differing = spec_differences(runs) if len(runs) > 1 else []
    metrics = (
        store.metrics_frame(list(runs["run_id"]))
        if len(runs)
        else pd.DataFrame(columns=["run_id", "step", "name", "value"])
    )
    stats = store.layer_stats_frame(list(runs["run_id"]), columns=["grad_rms"]) if len(runs) else pd.DataFrame()
    records = []
    for run in runs.itertuples(index=False):
        run_stats = stats[stats["run_id"] == run.run_id] if len(stats) else stats
        last_step = int(run_stats["step"].max()) if len(run_stats) else 0
        record = {
            "run_id": run.run_id,
            "name": run.name,
            "status": run.status,
            "steps_done": run.steps_done,
            "diverged_at": run.diverged_at,
            "test_accuracy": _final_metric(metrics[metrics["run_id"] == run.run_id], "test_accuracy"),
            "grad_ratio_init": gradient_ratio(run_stats, 0) if len(run_stats) else math.nan,
            "grad_ratio_final": gradient_ratio(run_stats, last_step) if len(run_stats) else math.nan,
        }
        spec_row = runs[runs["run_id"] == run.run_id].iloc[0]
        for key in differing:
            record[key] = spec_row.get(f"spec.{key}", np.nan)
        records.append(record)
    return pd.DataFrame(records), differing


def layer_summary(layer_stats: pd.DataFrame) -> pd.DataFrame:
    """Per-layer table of one run at its first and last recorded steps.

    One row per layer in forward order, columns: layer, kind, activation, and for the first
    (``_init``) and last (``_final``) recorded step: grad_rms, saturated_frac, dead_units_frac,
    pre_mean, pre_std, update_ratio.
    """
    if layer_stats.empty:
        return pd.DataFrame()
    first, last = int(layer_stats["step"].min()), int(layer_stats["step"].max())
    columns = ["grad_rms", "saturated_frac", "dead_units_frac", "pre_mean", "pre_std", "update_ratio"]
    columns = [c for c in columns if c in layer_stats.columns]
    base = layer_stats[layer_stats["step"] == first].sort_values("order")[["layer", "kind", "activation", *columns]]
    end = layer_stats[layer_stats["step"] == last][["layer", *columns]]
    table = base.merge(end, on="layer", how="left", suffixes=("_init", "_final"))
    return table
