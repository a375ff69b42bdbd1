"""What every sink shares: the tag scheme, stats rows as (step, tag, value) points, closing, fan-out.

A sink is any callable ``sink(stats, histograms_or_None)``, which `Probe` calls at each flush with
the rows recorded since the last one (see ``Probe(sink=...)``). The sinks here also close (and flush
their writer) through ``close()`` or a ``with`` block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from ..records import LAYER_ID_COLUMNS

__all__ = ["ClosingSink", "MultiSink", "Sink", "histogram_blocks", "scalar_points", "stat_columns", "tag"]

Sink = Callable[[pd.DataFrame, "pd.DataFrame | None"], None]


def tag(column: str, layer: str) -> str:
    """Return the tag of one column of one layer: ``<column>/<layer>``, e.g. ``grad_rms/net.1``.

    TensorBoard and W&B group charts by the part before the first slash: one section per column
    (grad_rms, saturated_frac, ...) holding one chart per layer.
    """
    return f"{column}/{layer}"


def stat_columns(stats: pd.DataFrame, columns: Sequence[str] | None = None) -> list[str]:
    """Return the numeric statistics columns of `stats` to publish: `columns` if given, else every one."""
    if columns is not None:
        missing = [c for c in columns if c not in stats.columns]
        if missing:
            raise KeyError(f"columns {missing} are not in the probe's rows; it has {list(stats.columns)}")
        return list(columns)
    return [c for c in stats.columns if c not in LAYER_ID_COLUMNS and pd.api.types.is_numeric_dtype(stats[c])]


def scalar_points(
    stats: pd.DataFrame, columns: Sequence[str] | None = None
) -> Iterator[tuple[int, list[tuple[str, str, float]]]]:
    """Yield ``(step, [(column, layer, value), ...])`` per recorded step, in step order.

    NaN marks a column that does not apply to a row (a weight row has no ``pre_mean``) and is
    left out; infinities are kept: an exploding gradient is a value worth seeing.
    """
    if stats.empty:
        return
    names = stat_columns(stats, columns)
    values = stats[names].to_numpy(dtype=np.float64)  # (rows, columns)
    layers = stats["layer"].astype(str).to_numpy()
    steps = stats["step"].to_numpy(dtype=np.int64)
    for step in np.unique(steps):
        rows = np.flatnonzero(steps == step)
        block = values[rows]
        found = np.argwhere(~np.isnan(block))  # (points, 2): row within block, column
        yield (
            int(step),
            [(names[c], str(layers[rows[r]]), float(block[r, c])) for r, c in found],
        )


class ClosingSink:
    """A sink usable as a context manager; subclasses implement ``__call__`` and ``close``."""

    def __call__(self, stats: pd.DataFrame, histograms: pd.DataFrame | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Write out what is buffered and release the writer. Closing twice is fine."""

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class MultiSink(ClosingSink):
    """Hand each flushed chunk to several sinks, e.g. ``MultiSink(TensorBoardSink("tb"), MLflowSink())``.

    Every sink gets the chunk even when one before it raises; the first error is raised after.
    ``close()`` closes every sink that has a ``close``.
    """

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = [s for s in sinks if s is not None]

    def __call__(self, stats: pd.DataFrame, histograms: pd.DataFrame | None = None) -> None:
        self._each(lambda sink: sink(stats, histograms))

    def close(self) -> None:
        """Close every sink (each one, even when one before it fails)."""
        self._each(lambda sink: getattr(sink, "close", lambda: None)())

    def _each(self, action: Callable[[Sink], None]) -> None:
        errors: list[BaseException] = []
        for sink in self.sinks:
            try:
                action(sink)
            except Exception as error:  # the other sinks still get their rows
                errors.append(error)
        if errors:
            for later in errors[1:]:
                errors[0].add_note(f"gradientflow: another sink also failed: {later!r}")
            raise errors[0]


def histogram_blocks(
    histograms: pd.DataFrame | None,
) -> Iterator[tuple[int, str, str, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(step, quantity, layer, bin_left, bin_right, count)`` per histogram of a probe's histogram frame."""
    if histograms is None or histograms.empty:
        return
    for (step, quantity, layer), block in histograms.groupby(["step", "quantity", "layer"], sort=False):
        yield (
            int(step),
            str(quantity),
            str(layer),
            block["bin_left"].to_numpy(dtype=np.float64),
            block["bin_right"].to_numpy(dtype=np.float64),
            block["count"].to_numpy(dtype=np.float64),
        )
