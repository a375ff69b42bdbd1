"""`MLflowSink`: the probe's rows as MLflow metrics of a run (a SQLite file or any tracking server)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .base import ClosingSink, scalar_points, tag
from .extras import require

__all__ = ["MLflowSink", "metric_key"]

_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_NOT_ALLOWED = re.compile(r"[^\w\-. :/]")


def metric_key(column: str, layer: str) -> str:
    """Return the MLflow metric key of a column of a layer: `tag` with characters MLflow rejects as ``_``.

    MLflow keys allow letters, digits, ``_ - . : /`` and spaces, so a repeated call's ``act#1``
    becomes ``act_1``.
    """
    return _NOT_ALLOWED.sub("_", tag(column, layer))


class MLflowSink(ClosingSink):
    """Log each flushed chunk of probe rows as MLflow metrics ``<column>/<layer>`` at the probe's step.

    Args:
        tracking_uri: e.g. ``"sqlite:///mlflow.db"`` (a local file) or a server's URL; None: MLflow's
            own default (``MLFLOW_TRACKING_URI``). MLflow 3 refuses a plain folder (``file:``) store
            unless ``MLFLOW_ALLOW_FILE_STORE=true`` is set.
        experiment: experiment name, created if missing (ignored with `run_id`).
        run_id: an existing run to log into (e.g. ``mlflow.active_run().info.run_id``); it is not
            ended by `close`. Without one the sink creates a run and ends it on `close`.
        run_name: name of the run the sink creates.
        columns: statistics columns to log (default: every numeric one the probe records).

    MLflow has no histogram type: histograms are not logged. MLflow stores an infinite value as
    the largest float (1.8e308).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        experiment: str = "gradientflow",
        run_id: str | None = None,
        run_name: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> None:
        tracking = require("mlflow.tracking", "mlflow", "MLflowSink")
        self._metric = require("mlflow.entities", "mlflow", "MLflowSink").Metric
        self.client: Any = tracking.MlflowClient(tracking_uri=tracking_uri)
        self._owns_run = run_id is None
        if run_id is None:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
            run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        self.run_id: str = run_id
        self.columns = columns
        self._pending: list[Any] = []  # MLflow's futures of batches still being written
        self._closed = False

    def __call__(self, stats: pd.DataFrame, histograms: pd.DataFrame | None = None) -> None:
        """Log one flushed chunk's scalars in batches of at most 1000 metrics, written on MLflow's logging thread.

        A synchronous batch into SQLite costs several milliseconds per hundred metrics, which
        would land on the training step that flushes; `close` (and `wait`) wait for them.
        """
        now = int(time.time() * 1000)
        metrics = [
            self._metric(metric_key(column, layer), value, now, step)
            for step, points in scalar_points(stats, self.columns)
            for column, layer, value in points
        ]
        for start in range(0, len(metrics), _BATCH):
            batch = metrics[start : start + _BATCH]
            self._pending.append(self.client.log_batch(self.run_id, metrics=batch, synchronous=False))

    def wait(self) -> None:
        """Block until every batch logged so far is written (raises the first failure)."""
        pending, self._pending = self._pending, []
        for operation in pending:
            operation.wait()

    def close(self, status: str = "FINISHED") -> None:
        """End the run the sink created with `status` (FINISHED, FAILED, KILLED); a run passed in stays open."""
        if self._closed:
            return
        self._closed = True
        self.wait()
        if self._owns_run:
            self.client.set_terminated(self.run_id, status=status)
