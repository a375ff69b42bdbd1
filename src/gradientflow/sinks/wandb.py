"""`WandbSink`: the probe's rows logged to a Weights & Biases run (online or ``mode="offline"``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .base import ClosingSink, histogram_blocks, scalar_points, tag
from .extras import require

__all__ = ["WandbSink", "STEP_METRIC"]

#: The x-axis of every gradientflow chart: the probe's step, logged beside the values, so the rows
#: can share a run whose own step counts something else (Lightning's WandbLogger, HF's callback).
STEP_METRIC = "gradientflow/step"


class WandbSink(ClosingSink):
    """Log each flushed chunk of probe rows to a W&B run: one ``run.log`` per recorded step.

    Keys are ``<column>/<layer>`` (histograms: ``<quantity>/<layer>`` as ``wandb.Histogram``),
    plotted against ``gradientflow/step`` (the probe's step) through ``run.define_metric``.

    Args:
        run: an existing run (``wandb.init(...)``, ``WandbLogger.experiment``), logged into and
            not finished by `close`. Without one the sink starts its own with ``wandb.init``.
        project, mode, init: passed to ``wandb.init`` when the sink starts the run; ``mode="offline"``
            writes under ``./wandb`` (or ``dir=``) for ``wandb sync`` later, with no network.
        columns: statistics columns to log (default: every numeric one the probe records).
        histograms: log histograms when the probe records them.
    """

    def __init__(
        self,
        run: Any = None,
        *,
        project: str = "gradientflow",
        mode: str | None = None,
        columns: Sequence[str] | None = None,
        histograms: bool = True,
        **init: Any,
    ) -> None:
        self._wandb = require("wandb", "wandb", "WandbSink")
        self._owns_run = run is None
        self.run = self._wandb.init(project=project, mode=mode, **init) if run is None else run
        self.columns = columns
        self.histograms = histograms
        self._defined: set[str] = set()
        self._closed = False

    def __call__(self, stats: pd.DataFrame, histograms: pd.DataFrame | None = None) -> None:
        """Log one flushed chunk: one ``run.log`` per recorded step, scalars and histograms together."""
        by_step: dict[int, dict[str, Any]] = {}
        for step, points in scalar_points(stats, self.columns):
            by_step.setdefault(step, {}).update({tag(c, layer): v for c, layer, v in points})
        if self.histograms:
            for step, quantity, layer, left, right, count in histogram_blocks(histograms):
                edges = np.append(left, right[-1])
                by_step.setdefault(step, {})[tag(quantity, layer)] = self._wandb.Histogram(np_histogram=(count, edges))
        for step in sorted(by_step):
            self._define(by_step[step])
            self.run.log({STEP_METRIC: step, **by_step[step]})

    def _define(self, values: dict[str, Any]) -> None:
        if not self._defined:
            self.run.define_metric(STEP_METRIC, hidden=True)
        for section in {key.split("/", 1)[0] for key in values} - self._defined:
            self.run.define_metric(f"{section}/*", step_metric=STEP_METRIC)
            self._defined.add(section)

    def close(self) -> None:
        """Finish the run if the sink started it (a run passed in stays open)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_run:
            self.run.finish()
