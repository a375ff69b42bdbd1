"""Opening files: migrations applied once, older files upgraded in place, bad files rejected."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import pytest
from store_helpers import layer_frame, make_info

from gradientflow.errors import StoreError
from gradientflow.records import HISTOGRAM_COLUMNS, LAYER_ID_COLUMNS, LAYER_STAT_COLUMNS
from gradientflow.store import MIGRATIONS, Store, schema


def applied_migrations(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT name, applied_at FROM migrations ORDER BY rowid").fetchall()


def test_new_file_records_every_migration_once_in_order(db_path: Path) -> None:
    Store(db_path).close()
    first = applied_migrations(db_path)
    assert [name for name, _ in first] == [name for name, _ in MIGRATIONS]
    assert all(applied_at.endswith("+00:00") for _, applied_at in first)

    Store(db_path).close()  # reopening applies nothing and changes nothing
    assert applied_migrations(db_path) == first


def test_file_is_in_wal_mode_with_a_busy_timeout(store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._connection().execute("PRAGMA busy_timeout").fetchone()[0] == 30_000


def test_older_file_is_upgraded_in_place_keeping_its_rows(db_path: Path) -> None:
    # An "old" gradientflow that knew only the first migration (the runs table) wrote this file.
    db = schema.connect(db_path, readonly=False, busy_timeout_s=5)
    assert schema.migrate(db, db_path, MIGRATIONS[:1]) == [MIGRATIONS[0][0]]
    db.execute(
        "INSERT INTO runs (run_id, name, spec_json, status, seed, created_at) "
        "VALUES ('old0001', 'old run', '{\"model\":{\"depth\":2}}', 'finished', 3, '2024-01-01T00:00:00+00:00')"
    )
    db.close()

    with pytest.raises(StoreError, match="older schema.*without readonly"):
        Store(db_path, readonly=True)

    with Store(db_path) as store:
        assert [name for name, _ in applied_migrations(db_path)] == [name for name, _ in MIGRATIONS]
        assert store.run("old")["spec"] == {"model": {"depth": 2}}
        assert store.completed_run_ids() == {"old0001"}
        store.begin_run(make_info("new0001"))  # the tables added by the upgrade work
        store.write_layer_stats("new0001", layer_frame(0))
        assert len(store.layer_stats_frame(["new0001"])) == 3


def test_file_from_a_newer_gradientflow_is_rejected_naming_the_path(db_path: Path) -> None:
    Store(db_path).close()
    with sqlite3.connect(db_path) as db:
        db.execute("INSERT INTO migrations VALUES ('m099_from_the_future', '2030-01-01T00:00:00+00:00')")
    for readonly in (False, True):
        with pytest.raises(StoreError, match="newer gradientflow.*m099_from_the_future") as caught:
            Store(db_path, readonly=readonly)
        assert str(db_path) in str(caught.value)


def test_a_file_that_is_not_sqlite_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are not the results you are looking for\n" * 20)
    with pytest.raises(StoreError, match="is not an SQLite database") as caught:
        Store(path)
    assert str(path) in str(caught.value)
    assert path.read_text().startswith("these are not")  # left untouched


def test_an_sqlite_file_of_another_program_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match="not a gradientflow one.*customers"):
        Store(path)


def test_readonly_on_a_missing_file_says_to_run_first(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="gradientflow run") as caught:
        Store(path, readonly=True)
    assert str(path) in str(caught.value)
    assert not path.exists()


def test_readonly_store_reads_but_refuses_writes(db_path: Path) -> None:
    with Store(db_path) as store:
        store.begin_run(make_info("abc"))
    with Store(db_path, readonly=True) as reader:
        assert reader.run_ids() == ["abc"]
        with pytest.raises(StoreError, match="readonly"):
            reader.begin_run(make_info("def"))


def test_closed_store_says_so(db_path: Path) -> None:
    store = Store(db_path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.run_ids()


def test_parent_folders_are_created(tmp_path: Path) -> None:
    with Store(tmp_path / "a" / "b" / "results.db") as store:
        assert store.run_ids() == []


def test_schema_has_a_column_for_every_record_column(store: Store) -> None:
    # When records gains a statistic, add a migration for it (until then it would go to `extra`).
    db = store._connection()
    layer_columns = [row[1] for row in db.execute("PRAGMA table_info(layer_stats)")]
    assert layer_columns == ["run_id", *LAYER_ID_COLUMNS, *LAYER_STAT_COLUMNS, "extra"]
    histogram_columns = [row[1] for row in db.execute("PRAGMA table_info(histograms)")]
    assert histogram_columns == ["run_id", *HISTOGRAM_COLUMNS]
    indexes = {row[0] for row in db.execute("SELECT sql FROM sqlite_master WHERE type = 'index'")}
    for table in ("metrics", "layer_stats", "histograms"):
        assert any(f"ON {table} (run_id, step)" in (sql or "") for sql in indexes)


def test_a_store_cannot_be_pickled_to_a_worker(store: Store) -> None:
    with pytest.raises(StoreError, match="open a Store there"):
        pickle.dumps(store)
