"""`TensorBoardSink`: the probe's rows as TensorBoard scalars and histograms (event files in a log dir)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .base import ClosingSink, histogram_blocks, scalar_points, tag
from .extras import require

__all__ = ["TensorBoardSink"]


class TensorBoardSink(ClosingSink):
    """Write each flushed chunk of probe rows into TensorBoard event files under `logdir`.

    Scalars are tagged ``<column>/<layer>`` (e.g. ``grad_rms/net.1``: one section per column, one
    chart per layer); the global step is the probe's step. Histograms (``Probe(histograms=True)``)
    are tagged ``<quantity>/<layer>`` with quantity ``pre_activation`` or ``log10_abs_grad`` and
    written with ``add_histogram_raw`` from the probe's fixed bins; their ``sum`` and ``sum_squares``
    are computed from bin centres.

    Args:
        logdir: folder for the event files (created), as ``SummaryWriter(log_dir=...)``.
        columns: statistics columns to write (default: every numeric one the probe records).
        histograms: write histograms when the probe records them.
        writer: an existing ``torch.utils.tensorboard.SummaryWriter`` to write into instead
            (e.g. Lightning's ``TensorBoardLogger.experiment``); it is flushed, not closed, by `close`.

    Example::

        with TensorBoardSink("runs/mlp") as sink, Probe(model, every=10, sink=sink) as probe:
            ...  # train; then: tensorboard --logdir runs
    """

    def __init__(
        self,
        logdir: str | Path = "runs/gradientflow",
        *,
        columns: Sequence[str] | None = None,
        histograms: bool = True,
        writer: Any = None,
    ) -> None:
        if writer is None:
            require("tensorboard", "tensorboard", "TensorBoardSink")
            summary_writer = require("torch.utils.tensorboard", "tensorboard", "TensorBoardSink").SummaryWriter
            writer = summary_writer(log_dir=str(logdir))
            self._owns_writer = True
        else:
            self._owns_writer = False
        self.writer = writer
        self.columns = columns
        self.histograms = histograms
        self._summary = require("tensorboard.compat.proto.summary_pb2", "tensorboard", "TensorBoardSink").Summary
        self._closed = False

    @property
    def logdir(self) -> str:
        """Return the folder the event files are written to."""
        return str(self.writer.get_logdir())

    def __call__(self, stats: pd.DataFrame, histograms: pd.DataFrame | None = None) -> None:
        """Write one flushed chunk: one event per step with all its scalars, then its histograms."""
        # one Summary per step holding every scalar costs about a seventh of add_scalar per value
        file_writer = self.writer._get_file_writer()
        for step, points in scalar_points(stats, self.columns):
            values = [self._summary.Value(tag=tag(c, layer), simple_value=v) for c, layer, v in points]
            file_writer.add_summary(self._summary(value=values), step)
        if self.histograms:
            for step, quantity, layer, left, right, count in histogram_blocks(histograms):
                self._add_histogram(tag(quantity, layer), left, right, count, step)

    def _add_histogram(self, name: str, left: np.ndarray, right: np.ndarray, count: np.ndarray, step: int) -> None:
        filled = np.flatnonzero(count > 0)
        if filled.size == 0:
            return  # no values (a layer without a gradient): TensorBoard cannot draw an empty histogram
        # TensorBoard reads bucket i as (limit[i-1], limit[i]] with the first from `min`: trimmed
        # to the bins that hold values, as SummaryWriter.add_histogram does
        first, last = filled[0], filled[-1] + 1
        centres = (left[first:last] + right[first:last]) / 2
        counts = count[first:last]
        self.writer.add_histogram_raw(
            name,
            min=float(left[first]),
            max=float(right[last - 1]),
            num=float(counts.sum()),
            sum=float((counts * centres).sum()),
            sum_squares=float((counts * centres**2).sum()),
            bucket_limits=right[first:last].tolist(),
            bucket_counts=counts.tolist(),
            global_step=step,
        )

    def add_metrics(self, metrics: pd.DataFrame) -> None:
        """Write run metrics (columns step, name, value, as `Store.metrics_frame`) as scalars tagged by name."""
        for step, name, value in metrics[["step", "name", "value"]].itertuples(index=False):
            self.writer.add_scalar(str(name), float(value), int(step))

    def flush(self) -> None:
        """Write buffered events to disk now."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the writer (an existing writer passed in is only flushed)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_writer:
            self.writer.close()
        else:
            self.writer.flush()
