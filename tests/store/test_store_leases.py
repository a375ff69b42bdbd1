"""Leases: a run another live process trains is never restarted; a dead or silent owner's run is."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_helpers import layer_frame, make_info

from gradientflow.errors import StoreError
from gradientflow.records import RunOutcome
from gradientflow.store import Store, owner_id

REMOTE = "other-host:4242:cafe"  # another machine: only its heartbeat says whether it lives


def lease_of(path: Path, run_id: str) -> tuple[str, str, float]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT status, owner, heartbeat_at FROM runs WHERE run_id = ?", (run_id,)).fetchone()


def test_a_live_owners_run_is_left_alone(store: Store, db_path: Path) -> None:
    info = make_info("r1")
    assert store.claim_run(info, owner=REMOTE) == "claimed"
    store.write_layer_stats("r1", layer_frame(0))
    assert store.claim_run(info) == "elsewhere"
    with pytest.raises(StoreError, match="being trained by another process"):
        store.begin_run(info)
    assert lease_of(db_path, "r1")[1] == REMOTE
    assert len(store.layer_stats_frame(["r1"])) == 3  # its rows were not deleted


def test_a_silent_owners_run_is_claimed_and_restarted(store: Store, db_path: Path) -> None:
    info = make_info("r1")
    store.claim_run(info, owner=REMOTE)
    store.write_layer_stats("r1", layer_frame(0))
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE runs SET heartbeat_at = ?", (time.time() - 120,))
    assert store.claim_run(info, lease_s=60) == "claimed"
    status, owner, _ = lease_of(db_path, "r1")
    assert (status, owner) == ("running", owner_id())
    assert store.layer_stats_frame(["r1"]).empty


def test_a_dead_local_owners_run_is_claimed_at_once(store: Store, db_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f"{socket.gethostname()}:{int(done.stdout)}:beef"  # heartbeat fresh, process gone
    info = make_info("r1")
    store.claim_run(info, owner=dead)
    assert store.claim_run(info) == "claimed"


def test_results_are_never_claimed(store: Store) -> None:
    info = make_info("r1")
    store.claim_run(info)
    store.finish_run("r1", RunOutcome("finished", 5))
    assert store.claim_run(info, owner=REMOTE) == "finished"


def test_an_owner_whose_run_was_taken_cannot_write_or_finish_it(store: Store) -> None:
    info = make_info("r1")
    store.claim_run(info, owner="gone-host:1:aaaa", lease_s=60)
    with store.writer("r1", owner="gone-host:1:aaaa") as writer:
        writer.add_layer_stats(layer_frame(0))  # committed while the lease is its own
    assert store.claim_run(info, owner=REMOTE, lease_s=0) == "claimed"  # the first owner fell silent
    with pytest.raises(StoreError, match="taken over by other-host"):
        store.write_batch("r1", metric_rows=[("r1", 0, "loss", 1.0)], owner="gone-host:1:aaaa")
    with pytest.raises(StoreError, match="taken over by other-host"):
        store.finish_run("r1", RunOutcome("finished", 5), owner="gone-host:1:aaaa")
    assert store.layer_stats_frame(["r1"]).empty  # the new owner started from nothing


def test_heartbeat_refreshes_and_release_frees_an_owners_runs(store: Store, db_path: Path) -> None:
    for run_id in ("r1", "r2"):
        store.claim_run(make_info(run_id), owner=REMOTE)
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE runs SET heartbeat_at = 0")
    assert store.heartbeat(REMOTE) == 2
    assert time.time() - lease_of(db_path, "r1")[2] < 5
    assert store.claim_run(make_info("r1")) == "elsewhere"
    store.release(REMOTE)
    assert store.claim_run(make_info("r1")) == "claimed"
