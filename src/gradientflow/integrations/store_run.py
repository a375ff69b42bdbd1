"""One training run of a framework callback stored in the results database, like a lab run."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import __version__
from ..records import RunInfo, RunOutcome
from ..store import Store

__all__ = ["StoreRun"]


class StoreRun:
    """A sink writing a begun run's rows to `path` through a batched `RunWriter`; `finish` ends the run.

    The run id is random (a callback's run has no spec to hash); `spec` records where it came from
    (framework, model class, probe options), so ``gradientflow runs/show/export/report`` read it.
    """

    def __init__(self, path: str | Path, name: str, spec: dict[str, Any], seed: int = 0) -> None:
        self.run_id = uuid.uuid4().hex
        self.store = Store(path)
        try:
            versions = {"gradientflow": __version__, "torch": torch.__version__}
            self.store.begin_run(RunInfo(self.run_id, name, spec, seed, versions=versions))
        except BaseException:
            self.store.close()
            raise
        self.writer = self.store.writer(self.run_id)
        self._finished = False

    def __call__(self, stats: pd.DataFrame, histograms: pd.DataFrame | None = None) -> None:
        """Buffer one flushed chunk (committed in batches)."""
        self.writer.add_layer_stats(stats)
        if histograms is not None and not histograms.empty:
            self.writer.add_histograms(histograms)

    def finish(self, steps_done: int, error: BaseException | None = None) -> None:
        """Commit what is buffered and mark the run finished, or failed with the error's message."""
        if self._finished:
            return
        self._finished = True
        try:
            self.writer.close()
            outcome = (
                RunOutcome("finished", steps_done)
                if error is None
                else RunOutcome("failed", steps_done, message=f"{type(error).__name__}: {error}")
            )
            self.store.finish_run(self.run_id, outcome)
        finally:
            self.store.close()
