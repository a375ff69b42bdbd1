"""Write side: turn records and frames into the row tuples SQLite stores.

Values become plain Python objects (sqlite3 cannot bind numpy integers) and NaN becomes NULL
(SQLite has no NaN); the read side turns NULL back into NaN. Conversion copies the data, so a
caller may reuse or mutate its frame once a write call returns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gradientflow.errors import StoreError
from gradientflow.records import HISTOGRAM_COLUMNS, MetricPoint

__all__ = [
    "canonical_json",
    "check_layer_frame",
    "histogram_rows",
    "layer_stat_rows",
    "metric_rows",
    "LAYER_REQUIRED_COLUMNS",
    "LAYER_TEXT_COLUMNS",
]

#: Columns without which a layer-stat row means nothing; the other identity columns may be absent.
LAYER_REQUIRED_COLUMNS: tuple[str, ...] = ("step", "layer", "kind")
LAYER_TEXT_COLUMNS: tuple[str, ...] = ("layer", "kind", "module_type", "activation")
_LAYER_INTEGER_COLUMNS: tuple[str, ...] = ("step", "order")
_RESERVED_COLUMNS: tuple[str, ...] = ("run_id", "extra")
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)  # one encoder: dumps() makes one per call


def canonical_json(value: Any, what: str) -> str:
    """Return `value` as JSON with sorted keys and no spaces: equal specs give equal text."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise StoreError(f"{what} cannot be stored as JSON: {error}") from error


def metric_rows(run_id: str, points: Iterable[MetricPoint]) -> list[tuple[Any, ...]]:
    """Rows (run_id, step, name, value) of the metrics table; NaN values become NULL."""
    rows = []
    for point in points:
        value = float(point.value)
        rows.append((run_id, int(point.step), str(point.name), None if math.isnan(value) else value))
    return rows


def _check_run_column(run_id: str, frame: pd.DataFrame, table: str) -> None:
    columns = frame.columns.tolist()
    if "run_id" in columns:
        others = set(frame["run_id"].dropna().unique()) - {run_id}
        if others:
            raise StoreError(
                f"{table} frame for run {run_id!r} has rows of other runs in its run_id column: "
                f"{', '.join(map(str, sorted(others)))}; write each run's rows separately"
            )
    if "extra" in columns:
        raise StoreError(f"{table} frame has a column named 'extra', which the store reserves")


def _integers(series: pd.Series, column: str, table: str, nullable: bool) -> list[Any]:
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        return series.to_numpy(dtype=np.int64).tolist()
    if series.isna().any() and not nullable:
        raise StoreError(f"{table} column {column!r} has missing values; every row needs one")
    values = series.to_numpy(dtype=object, na_value=None)
    try:
        integers = [None if value is None else int(value) for value in values]
    except (TypeError, ValueError) as error:
        raise StoreError(f"{table} column {column!r} must hold integers: {error}") from error
    if any(i is not None and i != value for i, value in zip(integers, values)):
        raise StoreError(f"{table} column {column!r} must hold whole numbers")
    return integers


def _floats(series: pd.Series, column: str, table: str) -> list[Any]:
    try:
        numbers = pd.to_numeric(series, errors="raise").astype("float64")
    except (TypeError, ValueError) as error:
        raise StoreError(f"{table} column {column!r} must be numeric (got dtype {series.dtype}): {error}") from error
    return numbers.to_numpy(dtype=object, na_value=None).tolist()


def _texts(series: pd.Series, column: str, table: str, nullable: bool) -> list[Any]:
    if series.isna().any() and not nullable:
        raise StoreError(f"{table} column {column!r} has missing values; every row needs one")
    values = series.to_numpy(dtype=object, na_value=None)
    return [None if value is None else str(value) for value in values]


def _extra_json(frame: pd.DataFrame, columns: Sequence[str]) -> list[str | None]:
    """One JSON object per row with its non-missing values of `columns`, or None when empty."""
    if not columns:
        return [None] * len(frame)
    try:  # the usual case, numeric extras (percentiles): one conversion for all of them
        block = frame[list(columns)].to_numpy(dtype=np.float64, na_value=np.nan)
        records = [{key: value for key, value in zip(columns, row) if not math.isnan(value)} for row in block.tolist()]
    except (TypeError, ValueError):
        records = [
            {key: value for key, value in record.items() if not _is_missing(value)}
            for record in frame[list(columns)].to_dict(orient="records")
        ]
    return [_JSON.encode(record) if record else None for record in records]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def check_layer_frame(run_id: str, frame: pd.DataFrame, table_columns: Sequence[str]) -> None:
    """Raise StoreError for a frame `layer_stat_rows` would reject; cheap (no data is converted)."""
    columns = frame.columns.tolist()  # a list: iterating a pandas Index is slow
    _check_run_column(run_id, frame, "layer_stats")
    missing = [column for column in LAYER_REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise StoreError(
            f"layer_stats frame for run {run_id!r} lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, columns)) or 'no columns'}"
        )
    if any(not isinstance(column, str) for column in columns):
        raise StoreError(f"layer_stats frame for run {run_id!r} has non-text column names")
    statistics = set(table_columns) - set(LAYER_TEXT_COLUMNS) - set(_LAYER_INTEGER_COLUMNS)
    for column, dtype in zip(columns, frame.dtypes.tolist()):
        if column not in statistics or getattr(dtype, "kind", "O") in "fiub":
            continue  # numbers (the usual case) need no look at the values
        if frame[column].map(lambda value: isinstance(value, str)).any():
            raise StoreError(
                f"layer_stats column {column!r} must be numeric (got dtype {dtype}) in the frame for run {run_id!r}"
            )


def layer_stat_rows(run_id: str, frame: pd.DataFrame, table_columns: Sequence[str]) -> list[list[Any]]:
    """Rows for ``layer_stats (run_id, *table_columns, extra)``.

    `table_columns` are the table's own columns besides run_id and extra; a frame column the
    table lacks (``pre_p2.5``, or a statistic newer than the schema) goes into the JSON `extra`.
    """
    check_layer_frame(run_id, frame, table_columns)
    if not len(frame):
        return []
    table = np.full((len(frame), len(table_columns) + 2), None, dtype=object)  # (rows, columns)
    table[:, 0] = run_id
    positions = {column: i + 1 for i, column in enumerate(table_columns)}
    statistics = []
    present = set(frame.columns.tolist())
    for column in table_columns:
        if column not in present:
            continue
        nullable = column not in LAYER_REQUIRED_COLUMNS
        if column in _LAYER_INTEGER_COLUMNS:
            table[:, positions[column]] = _integers(frame[column], column, "layer_stats", nullable)
        elif column in LAYER_TEXT_COLUMNS:
            table[:, positions[column]] = _texts(frame[column], column, "layer_stats", nullable)
        else:
            statistics.append(column)
    if statistics:
        # One conversion for every statistic: per-column pandas calls would cost more than the
        # insert itself at the few rows a step records.
        table[:, [positions[column] for column in statistics]] = _float_block(frame, statistics)
    known = set(table_columns) | set(_RESERVED_COLUMNS)
    extra_columns = [column for column in frame.columns.tolist() if column not in known]
    table[:, -1] = _extra_json(frame, extra_columns)
    return table.tolist()


def _float_block(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The `columns` as Python floats, None for NaN, shape (rows, len(columns))."""
    try:
        block = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        for column in columns:  # name the culprit
            _floats(frame[column], column, "layer_stats")
        raise
    values = block.astype(object)
    values[np.isnan(block)] = None
    return values


def histogram_rows(run_id: str, frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows for ``histograms (run_id, *HISTOGRAM_COLUMNS)``; every column is required."""
    _check_run_column(run_id, frame, "histograms")
    missing = [column for column in HISTOGRAM_COLUMNS if column not in frame.columns]
    unknown = [c for c in frame.columns if c not in HISTOGRAM_COLUMNS and c != "run_id"]
    if missing or unknown:
        raise StoreError(
            f"histograms frame for run {run_id!r} must have exactly the columns "
            f"{', '.join(HISTOGRAM_COLUMNS)}; missing: {', '.join(missing) or 'none'}, "
            f"unknown: {', '.join(map(str, unknown)) or 'none'}"
        )
    frame = frame.reset_index(drop=True)
    values = [
        _integers(frame["step"], "step", "histograms", nullable=False),
        _texts(frame["layer"], "layer", "histograms", nullable=False),
        _texts(frame["quantity"], "quantity", "histograms", nullable=False),
        _floats(frame["bin_left"], "bin_left", "histograms"),
        _floats(frame["bin_right"], "bin_right", "histograms"),
        _integers(frame["count"], "count", "histograms", nullable=False),
    ]
    return [(run_id, *row) for row in zip(*values)] if len(frame) else []
