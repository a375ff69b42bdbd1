"""What a report shows, read once from the store: runs, their labels, activation rows and metrics.

Panels read these frames by column name, never the objects that computed them, so a report can be
drawn from any database the store can open. No plotting here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from gradientflow.errors import StoreError
from gradientflow.store import Store, spec_differences

__all__ = ["ReportData", "load_report_data", "run_labels", "activation_stats", "final_metric"]

#: Per-layer columns the panels plot; reading only these keeps a 2000-step sweep quick to load.
PLOTTED_COLUMNS: tuple[str, ...] = (
    "grad_rms", "pre_p15", "pre_p50", "pre_p85", "saturated_frac", "dead_units_frac",
)  # fmt: skip

_ACTIVATION_KINDS = ("activation", "tap")


@dataclass(frozen=True)
class ReportData:
    """The runs of one report and what they recorded.

    `runs` is `Store.runs_frame()` restricted to the report's runs (in the order asked);
    `labels` maps run_id to a short legend label built from the differing spec keys;
    `layers` holds activation rows only (run_id, step, layer, order, statistics), forward order;
    `metrics` is `Store.metrics_frame` of those runs.
    """

    runs: pd.DataFrame
    differing: list[str]
    labels: dict[str, str]
    layers: pd.DataFrame
    metrics: pd.DataFrame

    @property
    def run_ids(self) -> list[str]:
        """The report's run ids, in order."""
        return list(self.runs["run_id"])


def load_report_data(store: Store, run_ids: Sequence[str] | None = None) -> ReportData:
    """Read the runs `run_ids` (ids or unique prefixes; all stored runs when None) from `store`."""
    runs = store.runs_frame()
    if run_ids is not None:
        wanted = store.resolve_run_ids(list(run_ids))
        runs = runs.set_index("run_id", drop=False).loc[wanted].reset_index(drop=True)
    ids = list(runs["run_id"])
    differing = spec_differences(runs) if len(runs) > 1 else []
    if ids:
        stats = _plotted_stats(store, ids)
        metrics = store.metrics_frame(ids)
    else:
        stats = pd.DataFrame(columns=["run_id", "step", "layer", "order", "kind", *PLOTTED_COLUMNS])
        metrics = pd.DataFrame(columns=["run_id", "step", "name", "value"])
    return ReportData(
        runs=runs,
        differing=differing,
        labels=run_labels(runs, differing),
        layers=activation_stats(stats),
        metrics=metrics,
    )


def _plotted_stats(store: Store, run_ids: list[str]) -> pd.DataFrame:
    try:
        return store.layer_stats_frame(run_ids, columns=PLOTTED_COLUMNS)
    except StoreError:
        # A probe configured with other percentiles stored no pre_p15: read what there is and let
        # `activation_stats` fill the missing columns with NaN, so the report still draws.
        return store.layer_stats_frame(run_ids)


def activation_stats(layer_stats: pd.DataFrame) -> pd.DataFrame:
    """Activation and tap rows of `layer_stats`, sorted by run, step and forward order.

    Missing plotted columns are added as NaN so every panel can read every column.
    """
    rows = layer_stats[layer_stats["kind"].isin(_ACTIVATION_KINDS)].copy()
    for column in PLOTTED_COLUMNS:
        if column not in rows.columns:
            rows[column] = math.nan
    return rows.sort_values(["run_id", "step", "order"], kind="stable").reset_index(drop=True)


def run_labels(runs: pd.DataFrame, differing: Sequence[str]) -> dict[str, str]:
    """A short, unique legend label per run: its differing spec values, then the id's first 6 characters.

    Keys are shortened to their last dotted part when that part is unambiguous
    (``model.norm`` -> ``norm``); with no differing keys the run's name is used.
    """
    leaves = [key.rsplit(".", 1)[-1] for key in differing]
    short = {key: leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(differing, leaves)}
    labels: dict[str, str] = {}
    for record in runs.to_dict("records"):
        parts = [f"{short[key]}={_show(record.get(f'spec.{key}'))}" for key in differing]
        head = ", ".join(parts) if parts else str(record.get("name", ""))
        labels[record["run_id"]] = f"{head} ({str(record['run_id'])[:6]})"
    return labels


def _show(value: object) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def final_metric(metrics: pd.DataFrame, run_id: str, name: str) -> float:
    """The last recorded value of metric `name` for `run_id`; NaN when never recorded."""
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["name"] == name)]
    return float(rows.sort_values("step", kind="stable")["value"].iloc[-1]) if len(rows) else math.nan
