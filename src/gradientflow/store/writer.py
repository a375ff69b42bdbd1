"""`RunWriter`: buffer one run's rows and commit them in few, large transactions.

A commit costs far more than an inserted row (a lock, a WAL append, with several workers a wait),
so a training loop that recorded every step with its own commit would slow down measurably. The
writer copies each frame when it is added (so the caller may reuse it), converts all buffered
frames in one pass and commits once `flush_rows` rows are waiting, and on `flush`/`close`.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pandas as pd

from gradientflow.errors import StoreError
from gradientflow.records import MetricPoint
from gradientflow.store import rows

if TYPE_CHECKING:
    from gradientflow.store.store import Store

__all__ = ["RunWriter"]


class RunWriter:
    """Accumulates metrics, layer stats and histograms of one begun run; commits them in batches.

    >>> with store.writer(run_id, flush_rows=10_000) as writer:  # doctest: +SKIP
    ...     for step in range(steps):
    ...         writer.add_layer_stats(probe_frame)
    ...         writer.add_metrics([MetricPoint(step, "train_loss", loss)])

    Leaving the ``with`` block flushes, also when it is left by an exception: the rows recorded
    up to a crash are what explains it.
    """

    def __init__(self, store: Store, run_id: str, *, flush_rows: int = 20_000, owner: str | None = None) -> None:
        if flush_rows < 1:
            raise StoreError(f"flush_rows must be a positive number of rows, got {flush_rows}")
        self.store = store
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.owner = owner  # set: every commit checks the run is still this owner's
        self._metric_rows: list[tuple[Any, ...]] = []
        self._layer_frames: list[pd.DataFrame] = []  # converted at flush: once, not per step
        self._layer_row_count = 0
        self._histogram_rows: list[tuple[Any, ...]] = []
        self._closed = False

    @property
    def pending_rows(self) -> int:
        """Rows added but not yet committed."""
        return len(self._metric_rows) + self._layer_row_count + len(self._histogram_rows)

    def add_metrics(self, points: Iterable[MetricPoint]) -> None:
        """Buffer metric points."""
        self._check_open()
        self._metric_rows.extend(rows.metric_rows(self.run_id, points))
        self._flush_if_full()

    def add_layer_stats(self, frame: pd.DataFrame) -> None:
        """Buffer a per-layer statistics frame (see `Store.write_layer_stats`)."""
        self._check_open()
        self.store.check_layer_frame(self.run_id, frame)
        # A copy, because the caller may reuse its frame; conversion to rows waits for the
        # flush, where one pass over all buffered frames costs far less than one per frame.
        self._layer_frames.append(frame.copy())
        self._layer_row_count += len(frame)
        self._flush_if_full()

    def add_histograms(self, frame: pd.DataFrame) -> None:
        """Buffer histogram bins (see `Store.write_histograms`)."""
        self._check_open()
        self._histogram_rows.extend(rows.histogram_rows(self.run_id, frame))
        self._flush_if_full()

    def flush(self) -> None:
        """Commit every buffered row in one transaction; on failure the rows stay buffered."""
        if not self.pending_rows:
            return
        layer_rows: list[list[Any]] = []
        if self._layer_frames:
            frames = pd.concat(self._layer_frames, ignore_index=True, sort=False)
            layer_rows = self.store.layer_stat_rows(self.run_id, frames)
        self.store.write_batch(
            self.run_id,
            metric_rows=self._metric_rows,
            layer_rows=layer_rows,
            histogram_rows=self._histogram_rows,
            owner=self.owner,
        )
        self._metric_rows, self._histogram_rows = [], []
        self._layer_frames, self._layer_row_count = [], 0

    def close(self) -> None:
        """Flush and stop accepting rows. Closing twice is fine."""
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except Exception as flush_error:  # never hide the error that ended the block
            exc.add_note(f"gradientflow: flushing the buffered rows of run {self.run_id!r} also failed: {flush_error}")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the writer of run {self.run_id!r} is closed; ask the store for a new one")

    def _flush_if_full(self) -> None:
        if self.pending_rows >= self.flush_rows:
            self.flush()
