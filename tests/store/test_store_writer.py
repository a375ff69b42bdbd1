"""RunWriter: rows wait in memory and are committed in batches, on flush, close and on errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from store_helpers import layer_frame

from gradientflow.errors import StoreError
from gradientflow.records import MetricPoint, RunInfo
from gradientflow.store import Store


def committed_layer_rows(path: Path) -> int:
    """Rows another connection sees: what is committed, not what is buffered."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM layer_stats").fetchone()[0]


def test_rows_are_committed_every_flush_rows_and_on_close(
    store: Store, begun: Callable[..., RunInfo], db_path: Path
) -> None:
    begun("abc")
    writer = store.writer("abc", flush_rows=10)
    writer.add_layer_stats(layer_frame(0))  # 3 rows
    writer.add_layer_stats(layer_frame(1))
    writer.add_metrics([MetricPoint(1, "train_loss", 0.5)])
    assert writer.pending_rows == 7 and committed_layer_rows(db_path) == 0
    writer.add_layer_stats(layer_frame(2))  # 10 rows waiting: one commit
    assert writer.pending_rows == 0 and committed_layer_rows(db_path) == 9
    writer.add_layer_stats(layer_frame(3))
    assert committed_layer_rows(db_path) == 9
    writer.close()
    assert committed_layer_rows(db_path) == 12
    assert store.metrics_frame()["value"].tolist() == [0.5]
    with pytest.raises(StoreError, match="writer of run 'abc' is closed"):
        writer.add_metrics([MetricPoint(2, "train_loss", 0.4)])
    writer.close()


def test_added_frames_are_copied(store: Store, begun: Callable[..., RunInfo]) -> None:
    begun("abc")
    frame = layer_frame(0)
    with store.writer("abc") as writer:
        writer.add_layer_stats(frame)
        frame["grad_rms"] = -1.0  # the probe reuses its frame for the next step
    assert (store.layer_stats_frame()["grad_rms"] != -1.0).all()


def test_leaving_by_an_exception_still_commits_the_buffered_rows(store: Store, begun: Callable[..., RunInfo]) -> None:
    begun("abc")
    with pytest.raises(FloatingPointError, match="loss is nan"), store.writer("abc") as writer:
        writer.add_layer_stats(layer_frame(0))
        raise FloatingPointError("loss is nan")
    assert len(store.layer_stats_frame()) == 3  # the rows that explain the crash are kept


def test_a_failing_flush_does_not_hide_the_original_error(store: Store, begun: Callable[..., RunInfo]) -> None:
    begun("abc")
    with pytest.raises(KeyError) as caught, store.writer("abc") as writer:
        writer.add_metrics([MetricPoint(0, "loss", 1.0)])
        store.close()  # the flush on exit will fail
        raise KeyError("original")
    assert any("flushing the buffered rows of run 'abc' also failed" in note for note in caught.value.__notes__)


def test_bad_frames_are_rejected_when_added(store: Store, begun: Callable[..., RunInfo]) -> None:
    begun("abc")
    with store.writer("abc") as writer:
        with pytest.raises(StoreError, match="lacks column"):
            writer.add_layer_stats(layer_frame(0).drop(columns=["kind"]))
        with pytest.raises(StoreError, match="'grad_rms' must be numeric"):
            writer.add_layer_stats(layer_frame(0).astype({"grad_rms": str}))
        assert writer.pending_rows == 0
    with pytest.raises(StoreError, match="flush_rows must be a positive"):
        store.writer("abc", flush_rows=0)
