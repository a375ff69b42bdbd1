"""The read side of `Store`: runs, id prefixes and the tables analysis and reports read.

`StoreReader` holds no connection of its own: `Store` provides `path`, `_query` and the layer_stats
columns of the open file. Queries return pandas frames in a fixed column order, NaN for NULL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gradientflow.errors import StoreError
from gradientflow.records import HISTOGRAM_COLUMNS, LAYER_ID_COLUMNS, RUN_STATUSES
from gradientflow.store import rows, tables

__all__ = ["COMPLETED_STATUSES", "StoreReader", "quoted"]

#: Runs with these statuses are results: the runner skips them on resume.
COMPLETED_STATUSES: tuple[str, ...] = ("finished", "diverged")
_SHOWN_RUN_IDS = 10  # how many known run ids an error message lists


class StoreReader:
    """Read-only queries over an open results database (see `Store`)."""

    path: Path
    _layer_columns: list[str]

    def _connection(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, parameters).fetchall()
        except sqlite3.Error as error:
            raise StoreError(f"reading {self.path} failed: {error}") from error

    def run_ids(self, status: str | None = None) -> list[str]:
        """Ids of the stored runs (oldest first), optionally only those with `status`."""
        if status is None:
            found = self._query("SELECT run_id FROM runs ORDER BY created_at, run_id")
        elif status in RUN_STATUSES:
            found = self._query("SELECT run_id FROM runs WHERE status = ? ORDER BY created_at, run_id", (status,))
        else:
            raise StoreError(f"unknown run status {status!r}; one of {', '.join(RUN_STATUSES)}")
        return [row[0] for row in found]

    def completed_run_ids(self) -> set[str]:
        """Ids of the runs that finished or diverged: results that a resumed sweep keeps."""
        marks = ", ".join("?" * len(COMPLETED_STATUSES))
        found = self._query(f"SELECT run_id FROM runs WHERE status IN ({marks})", COMPLETED_STATUSES)
        return {row[0] for row in found}

    def resolve_run_ids(self, prefixes: Sequence[str]) -> list[str]:
        """Full run ids of `prefixes` (a full id, or a unique prefix of one, as git accepts).

        Reports every unknown or ambiguous prefix at once, with the candidates, as StoreError.
        Duplicates are dropped; order is kept.
        """
        if isinstance(prefixes, str):
            prefixes = [prefixes]
        known = self.run_ids()
        known_set = set(known)
        resolved: list[str] = []
        problems: list[str] = []
        for prefix in prefixes:
            matches = [prefix] if prefix in known_set else [k for k in known if k.startswith(prefix)]
            if len(matches) == 1 and prefix:
                if matches[0] not in resolved:
                    resolved.append(matches[0])
            elif not matches or not prefix:
                problems.append(f"no run {prefix!r} in {self.path}")
            else:
                problems.append(
                    f"run id prefix {prefix!r} is ambiguous in {self.path}: it matches "
                    f"{_listing(matches)}; give more characters"
                )
        if problems:
            known_text = _listing(known) if known else "none (run `gradientflow run SPEC` first)"
            raise StoreError(f"{'; '.join(problems)}; known runs: {known_text}")
        return resolved

    def run(self, run_id: str) -> dict[str, Any]:
        """One run's metadata as a dict, its spec parsed under ``spec``; `run_id` may be a prefix."""
        (full_id,) = self.resolve_run_ids([run_id])
        columns = ", ".join(tables.RUN_COLUMNS)
        (found,) = self._query(f"SELECT {columns} FROM runs WHERE run_id = ?", (full_id,))
        record = dict(zip(tables.RUN_COLUMNS, found))
        record["spec"] = json.loads(record.pop("spec_json"))
        return record

    def runs_frame(self) -> pd.DataFrame:
        """One row per run (oldest first): metadata, ``spec`` (dict) and ``spec.<key>`` columns."""
        columns = ", ".join(tables.RUN_COLUMNS)
        found = self._query(f"SELECT {columns} FROM runs ORDER BY created_at, run_id")
        return tables.runs_table(found)

    def _run_filter(self, run_ids: Sequence[str] | None) -> tuple[str, tuple[Any, ...]]:
        """A WHERE condition selecting `run_ids` (prefixes resolved), and its parameters."""
        if run_ids is None:
            return "1", ()
        ids = self.resolve_run_ids(run_ids)
        # One JSON parameter instead of one per id: no limit on how many runs are asked for.
        return "run_id IN (SELECT value FROM json_each(?))", (rows.canonical_json(ids, "run ids"),)

    def metrics_frame(self, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Columns run_id, step, name, value (NaN where the value was NaN), in write order per run."""
        where, parameters = self._run_filter(run_ids)
        found = self._query(
            f"SELECT run_id, step, name, value FROM metrics WHERE {where} ORDER BY run_id, step, rowid",
            parameters,
        )
        columns = ("run_id", "step", "name", "value")
        return tables.frame_from_rows(found, columns, {"step": "int64", "value": "float64"})

    def histograms_frame(self, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Columns run_id and records.HISTOGRAM_COLUMNS, in write order per run."""
        where, parameters = self._run_filter(run_ids)
        columns = ("run_id", *HISTOGRAM_COLUMNS)
        found = self._query(
            f"SELECT {', '.join(columns)} FROM histograms WHERE {where} ORDER BY run_id, step, rowid",
            parameters,
        )
        dtypes = {"step": "int64", "bin_left": "float64", "bin_right": "float64", "count": "int64"}
        return tables.frame_from_rows(found, columns, dtypes)

    def layer_stats_frame(
        self, run_ids: Sequence[str] | None = None, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Per-layer statistics: run_id, records.LAYER_ID_COLUMNS, then the statistics.

        `columns` picks statistics (the identity columns always come); a column kept in `extra`
        (``pre_p2.5``) is asked for like any other. Missing values read back as NaN.
        """
        id_columns = [c for c in self._layer_columns if c in LAYER_ID_COLUMNS]
        stored = [c for c in self._layer_columns if c not in LAYER_ID_COLUMNS]
        wanted = None
        if columns is not None:  # without duplicates, in the order asked
            wanted = list(dict.fromkeys(c for c in columns if c not in ("run_id", *id_columns)))
        selected = stored if wanted is None else [c for c in stored if c in wanted]
        from_extra = None if wanted is None else [c for c in wanted if c not in stored]
        read_extra = from_extra is None or bool(from_extra)
        names = ["run_id", *id_columns, *selected, *(["extra"] if read_extra else [])]
        where, parameters = self._run_filter(run_ids)
        found = self._query(
            f"SELECT {', '.join(quoted(c) for c in names)} FROM layer_stats WHERE {where} ORDER BY run_id, step, rowid",
            parameters,
        )
        dtypes = {"step": "int64", "order": "Int64", **dict.fromkeys(selected, "float64")}
        frame = tables.frame_from_rows(found, names, dtypes)
        if read_extra:
            frame, keys = tables.expand_extra(frame, from_extra)
            absent = [c for c in (from_extra or []) if c not in keys]
            if absent:
                raise StoreError(
                    f"no layer-stat column {', '.join(map(repr, absent))} in {self.path} "
                    "for these runs; stored columns: "
                    f"{', '.join([*stored, *self._extra_keys(where, parameters)])}"
                )
        if wanted is not None:
            frame = frame[["run_id", *id_columns, *wanted]]
        return frame

    def _extra_keys(self, where: str, parameters: tuple[Any, ...]) -> list[str]:
        found = self._query(
            "SELECT DISTINCT key FROM layer_stats, json_each(layer_stats.extra) "
            f"WHERE extra IS NOT NULL AND {where} ORDER BY key",
            parameters,
        )
        return [row[0] for row in found]


def quoted(column: str) -> str:
    """`column` as an SQL identifier: column names such as ``order`` or ``pre_p2.5`` need quotes."""
    return '"' + column.replace('"', '""') + '"'


def _listing(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_RUN_IDS])
    more = len(ids) - _SHOWN_RUN_IDS
    return f"{shown} (and {more} more)" if more > 0 else shown
