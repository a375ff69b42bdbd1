"""Read side: build pandas tables from stored rows, and compare the specs of runs.

Pure functions over rows and frames, no SQL: `Store` queries, these shape the result. NULL reads
back as NaN in every numeric column, and the JSON `extra` column of layer stats is expanded back
into ordinary columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "RUN_COLUMNS",
    "SPEC_PREFIX",
    "expand_extra",
    "flatten_spec",
    "frame_from_rows",
    "runs_table",
    "spec_differences",
]

#: Prefix of the flattened spec columns of `Store.runs_frame`, e.g. ``spec.model.depth``.
SPEC_PREFIX = "spec."

_MISSING = object()


def flatten_spec(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys; lists and other values are leaves.

    >>> flatten_spec({"model": {"depth": 10, "widths": [64, 64]}, "seed": 0})
    {'model.depth': 10, 'model.widths': [64, 64], 'seed': 0}
    """
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_spec(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _comparable(value: Any) -> str:
    # JSON text makes lists and dicts comparable and tells 1 from True; a whole float equals the
    # int (lr 1 == lr 1.0) without rounding large ints through float.
    return json.dumps(_whole_floats_as_ints(value), sort_keys=True, default=str)


def _whole_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _whole_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_whole_floats_as_ints(item) for item in value]
    return value


def spec_differences(runs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> list[str]:
    """Return the sorted dotted spec keys whose values differ between the given runs.

    `runs` is `Store.runs_frame()` (or some of its rows), or a sequence of spec dicts. A key that
    some runs lack and others have counts as differing. Fewer than two runs differ in nothing.

    >>> spec_differences([{"model": {"depth": 10, "norm": "bn"}}, {"model": {"depth": 10, "norm": None}}])
    ['model.norm']
    """
    specs = _specs_of(runs)
    flats = [flatten_spec(spec) for spec in specs]
    keys = sorted({key for flat in flats for key in flat})
    differing = []
    for key in keys:
        values = {_comparable(flat[key]) if key in flat else _MISSING for flat in flats}
        if len(values) > 1:
            differing.append(key)
    return differing


def _specs_of(runs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if not isinstance(runs, pd.DataFrame):
        return list(runs)
    if "spec" in runs.columns:
        return list(runs["spec"])
    if "spec_json" in runs.columns:
        return [json.loads(text) for text in runs["spec_json"]]
    spec_columns = [c for c in runs.columns if isinstance(c, str) and c.startswith(SPEC_PREFIX)]
    if not spec_columns:
        raise ValueError(
            "spec_differences needs a frame with a 'spec' column (as Store.runs_frame() returns), "
            f"a 'spec_json' column or 'spec.*' columns; got columns {', '.join(map(str, runs.columns))}"
        )
    specs: list[Mapping[str, Any]] = []
    for record in runs[spec_columns].to_dict(orient="records"):
        specs.append({key[len(SPEC_PREFIX) :]: value for key, value in record.items() if not _is_nan(value)})
    return specs


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def frame_from_rows(
    rows: Sequence[tuple[Any, ...]],
    columns: Sequence[str],
    dtypes: Mapping[str, str],
) -> pd.DataFrame:
    """A frame of `rows` with `columns`; the columns named in `dtypes` are cast (NULL -> NaN)."""
    frame = pd.DataFrame.from_records(list(rows), columns=list(columns))
    for column, dtype in dtypes.items():
        if column in frame.columns:
            frame[column] = frame[column].astype(dtype)
    return frame


def expand_extra(frame: pd.DataFrame, wanted: Sequence[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Replace the JSON `extra` column by one column per key; return the frame and those keys.

    With `wanted`, only those keys become columns (a wanted key no row holds is left out; the
    caller decides whether that is an error). Numeric keys become float64 with NaN where a row
    lacks them.
    """
    texts = frame["extra"].tolist()
    frame = frame.drop(columns=["extra"])
    records = [json.loads(text) if isinstance(text, str) else {} for text in texts]
    keys: list[str] = []
    seen: set[str] = set()
    for record in records:
        for key in record:
            if key not in seen and (wanted is None or key in wanted):
                seen.add(key)
                keys.append(key)
    columns = {}
    for key in keys:
        column = pd.Series([record.get(key) for record in records], index=frame.index, dtype=object)
        try:
            columns[key] = column.astype("float64")
        except (TypeError, ValueError):
            columns[key] = column
    if columns:
        frame = pd.concat([frame, pd.DataFrame(columns, index=frame.index)], axis=1)
    return frame, keys


#: Columns of `runs` in the order `runs_frame` shows them; spec_json is replaced by `spec`.
RUN_COLUMNS: tuple[str, ...] = (
    "run_id", "name", "status", "seed", "group_id", "created_at", "started_at", "finished_at",
    "steps_done", "diverged_at", "message", "python_version", "torch_version",
    "gradientflow_version", "spec_json",
)  # fmt: skip

_RUN_DTYPES = {"seed": "int64", "steps_done": "int64", "diverged_at": "Int64"}


def runs_table(rows: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
    """One row per run: metadata, `spec` (the parsed dict) and one ``spec.<key>`` column per leaf."""
    frame = frame_from_rows(rows, RUN_COLUMNS, _RUN_DTYPES)
    specs = [json.loads(text) for text in frame["spec_json"]]
    frame = frame.drop(columns=["spec_json"])
    frame["spec"] = pd.Series(specs, index=frame.index, dtype=object)
    flats = [flatten_spec(spec) for spec in specs]
    keys = sorted({key for flat in flats for key in flat})
    if keys:
        flat_columns = {
            f"{SPEC_PREFIX}{key}": pd.Series(
                [flat.get(key) for flat in flats], index=frame.index, dtype=object
            ).infer_objects()
            for key in keys
        }
        frame = pd.concat([frame, pd.DataFrame(flat_columns, index=frame.index)], axis=1)
    return frame
