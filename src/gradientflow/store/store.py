"""`Store`: one SQLite file of runs and what they recorded, safe for several writing processes.

Each process (each runner worker) opens its own `Store`. The file is in WAL mode, so readers never
block writers, and every write is one ``BEGIN IMMEDIATE`` transaction that waits up to
`busy_timeout_s` for the write lock instead of failing with "database is locked". A failed write
rolls back only itself: rows committed before it stay.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from gradientflow.errors import StoreError
from gradientflow.records import (
    HISTOGRAM_COLUMNS,
    MetricPoint,
    RunInfo,
    RunOutcome,
)
from gradientflow.store import leases, rows, schema
from gradientflow.store.reader import COMPLETED_STATUSES, StoreReader, quoted
from gradientflow.store.writer import RunWriter

__all__ = ["Store", "DEFAULT_PATH"]

DEFAULT_PATH = "gradientflow.db"
_OUTCOMES = ("finished", "diverged", "failed")


class Store(StoreReader):
    """The results database at `path` (created and migrated on open unless `readonly`).

    >>> with Store(tmp_path / "results.db") as store:  # doctest: +SKIP
    ...     store.begin_run(info)
    ...     store.write_layer_stats(info.run_id, frame)
    ...     store.finish_run(info.run_id, RunOutcome("finished", steps_done=100))
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_PATH,
        *,
        readonly: bool = False,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.busy_timeout_s = busy_timeout_s
        self._db: sqlite3.Connection | None = None
        db = schema.connect(self.path, readonly=readonly, busy_timeout_s=busy_timeout_s)
        try:
            if readonly:
                pending = schema.pending_migrations(db, self.path)
                if pending:
                    raise StoreError(
                        f"{self.path} uses an older schema (it lacks {', '.join(pending)}); "
                        "open it once without readonly (any `gradientflow run`) to upgrade it"
                    )
            else:
                schema.migrate(db, self.path)
            columns = [row[1] for row in db.execute("PRAGMA table_info(layer_stats)")]
        except sqlite3.Error as error:
            db.close()
            raise StoreError(f"cannot open results database {self.path}: {error}") from error
        except BaseException:
            db.close()
            raise
        self._db = db
        #: layer_stats columns besides run_id and extra, as the file has them (it may be newer
        #: than records.LAYER_STAT_COLUMNS or older; what the table lacks goes into `extra`).
        self._layer_columns = [c for c in columns if c not in ("run_id", "extra")]

    def __repr__(self) -> str:
        mode = ", readonly=True" if self.readonly else ""
        return f"Store({str(self.path)!r}{mode})"

    def __reduce__(self) -> Any:
        raise StoreError(
            f"a Store cannot be sent to another process; pass its path ({self.path}) "
            "and open a Store there (each process needs its own connection)"
        )

    def close(self) -> None:
        """Close the connection; committed rows are already on disk. Closing twice is fine."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the store {self.path} is closed; open a new Store to use it")
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StoreError(f"the store {self.path} was opened readonly; open it without readonly to write")
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise StoreError(
                f"could not lock {self.path} for writing within {self.busy_timeout_s:g} s "
                f"({error}); is another program holding a write transaction open?"
            ) from error
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise StoreError(f"writing to {self.path} failed: {error}") from error
            raise

    # ---- write side -------------------------------------------------------------------------

    def queue_runs(self, infos: Iterable[RunInfo], *, group_id: str | None = None) -> None:
        """Record runs as ``queued`` (so progress can be shown); runs already stored are untouched."""
        records = [self._run_record(info, "queued", group_id) for info in infos]
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO runs (run_id, name, spec_json, status, seed, created_at, "
                "python_version, torch_version, gradientflow_version, group_id) "
                "VALUES (:run_id, :name, :spec_json, :status, :seed, :now, "
                ":python_version, :torch_version, :gradientflow_version, :group_id)",
                records,
            )

    def begin_run(self, info: RunInfo, *, group_id: str | None = None, owner: str | None = None) -> None:
        """Mark the run ``running``, owned by `owner` (this process by default), inserting it if new.

        A run that exists but never completed (queued, killed midway, failed) starts over: its
        partial metrics, layer stats and histograms are deleted in the same transaction, so a
        resumed sweep never holds duplicate rows. Raises StoreError for a finished or diverged run
        and for a run another live process is training (see `claim_run`).
        """
        claimed = self.claim_run(info, group_id=group_id, owner=owner)
        if claimed != "claimed":
            what = "being trained by another process" if claimed == "elsewhere" else f"already {claimed}"
            raise StoreError(
                f"run {info.run_id!r} in {self.path} is {what}; skip it "
                "(Store.completed_run_ids, Store.claim_run) or use another database to run it again"
            )

    def claim_run(
        self,
        info: RunInfo,
        *,
        group_id: str | None = None,
        owner: str | None = None,
        lease_s: float = leases.DEFAULT_LEASE_S,
    ) -> str:
        """Take the run for `owner` unless it is a result or another live process trains it.

        Returns ``"claimed"`` (the run is now ``running``, owned by `owner`, its partial rows
        deleted), ``"finished"``/``"diverged"`` (a stored result: nothing changed) or
        ``"elsewhere"`` (another owner's lease is live: nothing changed). The check and the
        claim are one write transaction, so of two processes claiming at once exactly one wins.
        """
        owner = owner or leases.owner_id()
        record = {**self._run_record(info, "running", group_id), "owner": owner, "beat": time.time()}
        with self._transaction() as db:
            found = db.execute(
                "SELECT status, owner, heartbeat_at FROM runs WHERE run_id = ?", (info.run_id,)
            ).fetchone()
            if found is not None and found[0] in COMPLETED_STATUSES:
                return str(found[0])
            if found is not None and found[0] == "running" and leases.lease_is_live(found[1], found[2], lease_s, owner):
                return "elsewhere"
            if found is None:
                db.execute(
                    "INSERT INTO runs (run_id, name, spec_json, status, seed, created_at, "
                    "started_at, python_version, torch_version, gradientflow_version, group_id, owner, heartbeat_at) "
                    "VALUES (:run_id, :name, :spec_json, :status, :seed, :now, :now, "
                    ":python_version, :torch_version, :gradientflow_version, :group_id, :owner, :beat)",
                    record,
                )
                return "claimed"
            for table in ("metrics", "layer_stats", "histograms"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (info.run_id,))
            db.execute(
                "UPDATE runs SET name = :name, spec_json = :spec_json, status = :status, "
                "seed = :seed, started_at = :now, finished_at = NULL, steps_done = 0, "
                "diverged_at = NULL, message = NULL, python_version = :python_version, "
                "torch_version = :torch_version, gradientflow_version = :gradientflow_version, "
                "group_id = :group_id, owner = :owner, heartbeat_at = :beat WHERE run_id = :run_id",
                record,
            )
        return "claimed"

    def heartbeat(self, owner: str) -> int:
        """Refresh the lease of every running run `owner` holds; return how many there are."""
        with self._transaction() as db:
            return db.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE owner = ? AND status = 'running'", (time.time(), owner)
            ).rowcount

    def lease_is_live(self, run_id: str, me: str, lease_s: float = leases.DEFAULT_LEASE_S) -> bool:
        """Return whether another owner than `me` is training `run_id` now (a live lease on a running run)."""
        found = self._query("SELECT status, owner, heartbeat_at FROM runs WHERE run_id = ?", (run_id,))
        return bool(found) and found[0][0] == "running" and leases.lease_is_live(found[0][1], found[0][2], lease_s, me)

    def release(self, owner: str) -> None:
        """Give up `owner`'s leases on runs still running (they stay ``running``, free to be claimed)."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET heartbeat_at = NULL WHERE owner = ? AND status = 'running'", (owner,))

    def _run_record(self, info: RunInfo, status: str, group_id: str | None) -> dict[str, Any]:
        return {
            "run_id": info.run_id,
            "name": info.name,
            "spec_json": rows.canonical_json(info.spec, f"the spec of run {info.run_id!r}"),
            "status": status,
            "seed": int(info.seed),
            "now": schema.utc_now(),
            "python_version": info.versions.get("python"),
            "torch_version": info.versions.get("torch"),
            "gradientflow_version": info.versions.get("gradientflow"),
            "group_id": group_id,
        }

    def write_metrics(self, run_id: str, points: Iterable[MetricPoint]) -> None:
        """Append metric points of a begun run, in one transaction."""
        self.write_batch(run_id, metric_rows=rows.metric_rows(run_id, points))

    def write_layer_stats(self, run_id: str, frame: pd.DataFrame) -> None:
        """Append a per-layer statistics frame (records.LAYER_ID_COLUMNS + stat columns).

        Columns the schema lacks (``pre_p2.5``) are kept in the JSON `extra` column and read back
        as ordinary columns; NaN is stored as NULL.
        """
        self.write_batch(run_id, layer_rows=self.layer_stat_rows(run_id, frame))

    def write_histograms(self, run_id: str, frame: pd.DataFrame) -> None:
        """Append histogram bins (exactly records.HISTOGRAM_COLUMNS) of a begun run."""
        self.write_batch(run_id, histogram_rows=rows.histogram_rows(run_id, frame))

    def layer_stat_rows(self, run_id: str, frame: pd.DataFrame) -> list[list[Any]]:
        """Convert a layer-stats frame into rows of this file's layer_stats table (for batching)."""
        return rows.layer_stat_rows(run_id, frame, self._layer_columns)

    def check_layer_frame(self, run_id: str, frame: pd.DataFrame) -> None:
        """Raise StoreError now for a layer-stats frame that `layer_stat_rows` would reject."""
        rows.check_layer_frame(run_id, frame, self._layer_columns)

    def write_batch(
        self,
        run_id: str,
        *,
        metric_rows: Sequence[Sequence[Any]] = (),
        layer_rows: Sequence[Sequence[Any]] = (),
        histogram_rows: Sequence[Sequence[Any]] = (),
        owner: str | None = None,
    ) -> None:
        """Insert already converted rows (see `rows`) of one run in one transaction.

        With `owner`, refuse (StoreError) when the run is no longer that owner's: rows of a run
        another process took over never mix with its own.
        """
        if not (metric_rows or layer_rows or histogram_rows):
            return
        layer_columns = ", ".join(quoted(c) for c in ("run_id", *self._layer_columns, "extra"))
        layer_marks = ", ".join("?" * (len(self._layer_columns) + 2))
        with self._transaction() as db:
            self._check_writable_run(db, run_id, owner)
            if metric_rows:
                db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", metric_rows)
            if layer_rows:
                db.executemany(f"INSERT INTO layer_stats ({layer_columns}) VALUES ({layer_marks})", layer_rows)
            if histogram_rows:
                columns = ", ".join(("run_id", *HISTOGRAM_COLUMNS))
                db.executemany(
                    f"INSERT INTO histograms ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    histogram_rows,
                )

    def _check_writable_run(self, db: sqlite3.Connection, run_id: str, owner: str | None = None) -> None:
        found = db.execute("SELECT status, owner FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if found is None:
            raise StoreError(f"no run {run_id!r} in {self.path}; call begin_run before writing its rows")
        if found[0] in COMPLETED_STATUSES:
            raise StoreError(
                f"run {run_id!r} in {self.path} is already {found[0]}; "
                "its rows cannot change (begin_run only restarts runs that did not complete)"
            )
        if owner is not None and found[1] != owner:
            raise StoreError(
                f"run {run_id!r} in {self.path} was taken over by {found[1]} (this process's lease "
                "lapsed); its rows are that process's now"
            )

    def finish_run(self, run_id: str, outcome: RunOutcome, *, owner: str | None = None) -> None:
        """Record how a run ended: status, steps_done, diverged_at, message, finished_at (UTC).

        With `owner`, only while the run is still that owner's (StoreError otherwise).
        """
        if outcome.status not in _OUTCOMES:
            raise StoreError(
                f"finish_run got status {outcome.status!r} for run {run_id!r}; "
                f"a run ends as one of {', '.join(_OUTCOMES)}"
            )
        with self._transaction() as db:
            if owner is not None:
                self._check_writable_run(db, run_id, owner)
            updated = db.execute(
                "UPDATE runs SET status = ?, steps_done = ?, diverged_at = ?, message = ?, "
                "finished_at = ? WHERE run_id = ?",
                (
                    outcome.status,
                    int(outcome.steps_done),
                    None if outcome.diverged_at is None else int(outcome.diverged_at),
                    outcome.message,
                    schema.utc_now(),
                    run_id,
                ),
            ).rowcount
            if updated == 0:
                raise StoreError(f"no run {run_id!r} in {self.path}; call begin_run first")

    def writer(self, run_id: str, *, flush_rows: int = 20_000, owner: str | None = None) -> RunWriter:
        """A buffer that commits this run's rows every `flush_rows` rows and on flush/close (as `owner`'s)."""
        return RunWriter(self, run_id, flush_rows=flush_rows, owner=owner)
