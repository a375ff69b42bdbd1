"""SQLite schema of the results database, kept as an ordered list of small migrations.

Each migration runs once per file, in order, and its name is recorded in the `migrations` table
(the pattern of simonw/llm and sqlite-utils): opening an older file applies only the missing ones,
and a file that records a migration this version does not know was written by a newer gradientflow.
Migrations are history: never edit one that has shipped; append a new one instead.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from gradientflow.errors import StoreError

__all__ = ["MIGRATIONS", "Migration", "connect", "migrate", "pending_migrations", "utc_now"]

Migration = Callable[[sqlite3.Connection], None]

#: Every migration, oldest first, as (name, function). The name is what the file records.
MIGRATIONS: list[tuple[str, Migration]] = []


def _migration(function: Migration) -> Migration:
    MIGRATIONS.append((function.__name__, function))
    return function


def utc_now() -> str:
    """Return the current time as ISO-8601 UTC text, e.g. ``2025-01-31T12:00:00.123+00:00``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@_migration
def m001_create_runs(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            spec_json TEXT NOT NULL,  -- the resolved spec as canonical JSON (sorted keys)
            status TEXT NOT NULL
                CHECK (status IN ('queued', 'running', 'finished', 'diverged', 'failed')),
            seed INTEGER NOT NULL,
            created_at TEXT NOT NULL,  -- ISO-8601 UTC, like every timestamp here
            started_at TEXT,
            finished_at TEXT,
            steps_done INTEGER NOT NULL DEFAULT 0,
            diverged_at INTEGER,
            message TEXT,
            python_version TEXT,
            torch_version TEXT,
            gradientflow_version TEXT,
            group_id TEXT  -- runs trained together in one vectorized group share it
        )
        """
    )
    db.execute("CREATE INDEX runs_status ON runs (status)")


@_migration
def m002_create_metrics(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE metrics (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            name TEXT NOT NULL,
            value REAL  -- NULL stands for NaN: SQLite cannot store NaN
        )
        """
    )
    db.execute("CREATE INDEX metrics_run_step ON metrics (run_id, step)")


# A frozen copy of records.LAYER_STAT_COLUMNS as this migration created them. When records gains a
# column, append a migration that adds it (ALTER TABLE); until then it lands in `extra` and still
# reads back as a column, so nothing is lost. tests/store check that the two lists agree.
_LAYER_STAT_COLUMNS_M003: tuple[str, ...] = (
    "pre_mean", "pre_std", "pre_min", "pre_max", "pre_p15", "pre_p50", "pre_p85",
    "saturated_frac", "dead_units_frac", "nonfinite_count",
    "grad_rms", "grad_norm", "grad_mean", "grad_std",
    "weight_norm", "weight_grad_norm", "update_ratio",
    "bn_input_mean", "bn_input_var", "bn_gamma_norm", "bn_beta_norm",
    "bn_running_mean_norm", "bn_running_var_mean",
)  # fmt: skip


@_migration
def m003_create_layer_stats(db: sqlite3.Connection) -> None:
    stat_columns = ",\n".join(f'"{column}" REAL' for column in _LAYER_STAT_COLUMNS_M003)
    db.execute(
        f"""
        CREATE TABLE layer_stats (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            layer TEXT NOT NULL,
            "order" INTEGER,
            kind TEXT NOT NULL,
            module_type TEXT,
            activation TEXT,
            {stat_columns},
            extra TEXT  -- JSON object of the columns the schema lacks, e.g. {{"pre_p2.5": -1.9}}
        )
        """
    )
    db.execute("CREATE INDEX layer_stats_run_step ON layer_stats (run_id, step)")


@_migration
def m004_create_histograms(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE histograms (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            layer TEXT NOT NULL,
            quantity TEXT NOT NULL,
            bin_left REAL NOT NULL,
            bin_right REAL NOT NULL,
            count INTEGER NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX histograms_run_step ON histograms (run_id, step)")


@_migration
def m005_run_leases(db: sqlite3.Connection) -> None:
    # Who trains a running run and when it last said so: two sweeps on one file never train
    # (and store) the same run twice; see store.leases.
    db.execute("ALTER TABLE runs ADD COLUMN owner TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN heartbeat_at REAL")  # Unix seconds


def connect(path: Path, *, readonly: bool, busy_timeout_s: float) -> sqlite3.Connection:
    """Open `path` in WAL mode with a busy timeout; raise StoreError if it is not an SQLite file.

    The connection is in autocommit mode (``isolation_level=None``): callers open their own
    ``BEGIN IMMEDIATE`` transactions, so a writer takes the write lock up front and waits for it
    (up to the busy timeout) instead of failing midway when another process writes.
    """
    if readonly:
        if not path.exists():
            raise StoreError(f"no results database at {path}; run `gradientflow run SPEC` first to create it")
        target, uri = f"{path.resolve().as_uri()}?mode=ro", True
    else:
        if path.is_dir():
            raise StoreError(f"cannot open results database {path}: it is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        target, uri = str(path), False
    try:
        connection = sqlite3.connect(target, uri=uri, timeout=busy_timeout_s, isolation_level=None)
    except sqlite3.Error as error:
        raise StoreError(f"cannot open results database {path}: {error}") from error
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            _enable_wal(connection, deadline=time.monotonic() + busy_timeout_s)
            # In WAL mode NORMAL never corrupts the file and keeps every commit across a crash of
            # the process; only an OS crash may drop the last commits, which resume re-runs anyway.
            connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as error:
        connection.close()
        if getattr(error, "sqlite_errorname", "") == "SQLITE_NOTADB":
            raise StoreError(
                f"{path} is not an SQLite database (SQLite: {error}); "
                "give the path of a gradientflow results database, or a new file name"
            ) from error
        raise StoreError(f"cannot open results database {path}: {error}") from error
    return connection


def _enable_wal(connection: sqlite3.Connection, deadline: float) -> None:
    # Switching a new file to WAL needs an exclusive lock and does not always wait on the busy
    # handler, so several workers opening one new file at once retry here.
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _applied(db: sqlite3.Connection, path: Path) -> set[str] | None:
    """Names of the migrations `db` records; None for an empty file."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "migrations" not in tables:
        if tables:
            raise StoreError(
                f"{path} is an SQLite database but not a gradientflow one "
                f"(it has tables {', '.join(sorted(tables))} and no `migrations` table); "
                "give another file name"
            )
        return None
    return {row[0] for row in db.execute("SELECT name FROM migrations")}


def pending_migrations(
    db: sqlite3.Connection, path: Path, migrations: Sequence[tuple[str, Migration]] = MIGRATIONS
) -> list[str]:
    """Return the names of the migrations `db` still lacks; raise StoreError for a newer file."""
    applied = _applied(db, path) or set()
    unknown = applied - {name for name, _ in migrations}
    if unknown:
        raise StoreError(
            f"{path} was written by a newer gradientflow (it records schema migrations "
            f"{', '.join(sorted(unknown))}, unknown to this version); "
            "upgrade gradientflow (pip install -U gradientflow) to open it"
        )
    return [name for name, _ in migrations if name not in applied]


def migrate(db: sqlite3.Connection, path: Path, migrations: Sequence[tuple[str, Migration]] = MIGRATIONS) -> list[str]:
    """Apply the migrations `db` lacks, in order, in one transaction; return their names.

    Safe when several processes open one file at once: the check is repeated under the write
    lock, so each migration runs exactly once.
    """
    if not pending_migrations(db, path, migrations):
        return []
    db.execute("BEGIN IMMEDIATE")
    try:
        if _applied(db, path) is None:
            db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        pending = pending_migrations(db, path, migrations)
        functions = dict(migrations)
        for name in pending:
            functions[name](db)
            db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, utc_now()))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return pending
