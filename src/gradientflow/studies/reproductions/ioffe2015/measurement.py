"""Ioffe & Szegedy (2015), Figure 1: the observer of one unit's input, and what is read back from the stored runs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from ....errors import GradientflowError
from ....records import MetricPoint
from ....spec import ResolvedRun
from ....store import Store
from .settings import LAST_HIDDEN, PERCENTILES, UNIT, WINDOWS, Setting

__all__ = [
    "unit_metric",
    "observe_unit",
    "unit_percentiles",
    "layer_percentiles",
    "window_drift",
    "accuracy_at",
    "steps_to_reach",
    "accuracy_curve",
    "Measured",
    "measure",
]


def unit_metric(percentile: float) -> str:
    """Metric name of the observed unit's input percentile, e.g. ``unit_input_p15``."""
    return f"unit_input_p{percentile:g}"


def observe_unit(
    model: nn.Module,
    emit: Callable[[list[MetricPoint]], None],
    layer: str = LAST_HIDDEN,
    unit: int = UNIT,
    every: int = 10,
) -> Callable[[], None]:
    """Record the 15/50/85th percentiles of unit `unit`'s input to module `layer` every `every` training steps.

    Percentiles are over the training mini-batch (numpy's linear interpolation), emitted as
    ``unit_input_p15`` ... at the step whose forward pass it was. Evaluation passes (eval mode or
    no gradients) are not counted. Returns the function that removes the hook.
    """
    modules = dict(model.named_modules())
    if layer not in modules:
        raise GradientflowError(
            f"observe_unit: the model has no module {layer!r}; it has {', '.join(n for n in modules if n)}"
        )
    quantiles = torch.tensor([p / 100 for p in PERCENTILES])
    calls = [0]

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        step = calls[0]
        calls[0] += 1
        if step % every:
            return
        values = torch.quantile(inputs[0].detach()[:, unit].double(), quantiles.double())  # (3,)
        emit([MetricPoint(step, unit_metric(p), float(v)) for p, v in zip(PERCENTILES, values)])

    handle = modules[layer].register_forward_pre_hook(hook)
    return handle.remove


def unit_percentiles(metrics: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """Step-indexed frame with columns p15, p50, p85: the observed unit's input percentiles."""
    columns = [f"p{p}" for p in PERCENTILES]
    rows = metrics[(metrics["run_id"] == run_id) & metrics["name"].str.startswith("unit_input_p")]
    if rows.empty:
        return pd.DataFrame(columns=columns, dtype="float64")
    frame = rows.pivot_table(index="step", columns="name", values="value")
    return frame.rename(columns=lambda name: name.removeprefix("unit_input_"))[columns]


def layer_percentiles(stats: pd.DataFrame, run_id: str, layer: str = LAST_HIDDEN) -> pd.DataFrame:
    """Step-indexed frame p15, p50, p85 of `layer`'s input pooled over all its units (the probe's columns)."""
    rows = stats[(stats["run_id"] == run_id) & (stats["layer"] == layer)].set_index("step").sort_index()
    return rows[[f"pre_p{p}" for p in PERCENTILES]].rename(columns=lambda c: c.removeprefix("pre_"))


def window_drift(percentiles: pd.DataFrame, windows: int = WINDOWS) -> float:
    """How far the distribution moves over training, in units of the sigmoid's input.

    The recorded steps are cut into `windows` equal spans of steps; each percentile is averaged in
    each span; the drift is the largest (max - min over spans) among the percentiles. Example: a
    median that is 0 in the first spans and 2 in the last gives at least 2.
    """
    if percentiles.empty:
        return math.nan
    steps = percentiles.index.to_numpy()
    span = (steps.max() - steps.min() + 1) / windows
    means = percentiles.groupby(((steps - steps.min()) // span).astype(int)).mean()  # (windows, 3)
    return float((means.max() - means.min()).max())


def accuracy_at(curve: pd.Series, step: int) -> float:
    """Test accuracy (fraction) of the last evaluation at or before `step`; NaN if none."""
    before = curve[curve.index <= step]
    return float(before.iloc[-1]) if len(before) else math.nan


def steps_to_reach(curve: pd.Series, threshold: float) -> int | None:
    """First evaluated step whose test accuracy is >= `threshold`; None if never reached."""
    reached = curve[curve >= threshold]
    return int(reached.index[0]) if len(reached) else None


def accuracy_curve(metrics: pd.DataFrame, run_id: str) -> pd.Series:
    """Step-indexed test accuracy (fraction) of run `run_id`, in step order."""
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["name"] == "test_accuracy")]
    return rows.set_index("step")["value"].sort_index()


@dataclass(frozen=True)
class Measured:
    """One setting's two runs, read back from the store: norm (``none`` | ``batch``) -> curve or frame."""

    setting: Setting
    run_ids: dict[str, str]
    status: dict[str, str]
    accuracy: dict[str, pd.Series]
    unit: dict[str, pd.DataFrame]
    layer: dict[str, pd.DataFrame]

    @property
    def early_step(self) -> int:
        """The fixed step where the accuracies are compared: a fifth of the run."""
        return self.setting.steps // 5

    def drift(self, which: str) -> dict[str, float]:
        """norm -> `window_drift` of the ``unit`` or ``layer`` percentiles."""
        frames = self.unit if which == "unit" else self.layer
        return {norm: window_drift(frame) for norm, frame in frames.items()}


def measure(setting: Setting, runs: list[ResolvedRun], store: Store) -> Measured:
    """Read one setting's two stored runs back: curves and percentile frames keyed by ``model.norm``."""
    ids: dict[str, str] = {run.spec.model.norm: run.run_id for run in runs}
    metrics = store.metrics_frame(list(ids.values()))
    stats = store.layer_stats_frame(list(ids.values()), columns=[f"pre_p{p}" for p in PERCENTILES])
    status = {norm: store.run(run_id)["status"] for norm, run_id in ids.items()}
    unit = {norm: unit_percentiles(metrics, run_id) for norm, run_id in ids.items()}
    for norm, frame in unit.items():
        if frame.empty and status[norm] != "failed":
            raise GradientflowError(
                f"run {ids[norm]} in {store.path} has no unit_input_p* metrics: it was stored by another command "
                "without this reproduction's observer; rerun with a fresh --db"
            )
    return Measured(
        setting,
        ids,
        status,
        {norm: accuracy_curve(metrics, run_id) for norm, run_id in ids.items()},
        unit,
        {norm: layer_percentiles(stats, run_id) for norm, run_id in ids.items()},
    )
