"""The runner: sweeps stored once, skipped on rerun, resumed after a kill, the same with workers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from gradientflow.records import RunOutcome
from gradientflow.runner import RunnerEvents, execute_run, plan, run_sweep
from gradientflow.spec import expand, load
from gradientflow.store import Store

from .helpers import count, duplicated_keys, one_thread, row_counts, tiny_spec, tiny_toml

SWEEP = {"model.norm": ["none", "batch"], "seeds": [0, 1]}


def stored_frames(db: Path) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """run_id -> (layer stats, metrics) as read back from `db`."""
    with Store(db, readonly=True) as store:
        return {
            run_id: (
                store.layer_stats_frame([run_id]).reset_index(drop=True),
                store.metrics_frame([run_id]).reset_index(drop=True),
            )
            for run_id in store.run_ids()
        }


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A 2 x 2 sweep run once with workers=1 into a fresh database: (db, SweepResult)."""
    db = tmp_path_factory.mktemp("sweep") / "results.db"
    ended: list[str] = []
    with one_thread():  # module-scoped: the autouse fixture has not run yet
        result = run_sweep(
            tiny_spec("grid", sweep=SWEEP),
            db,
            events=RunnerEvents(on_end=lambda run, outcome: ended.append(run.run_id)),
        )
    assert sorted(ended) == sorted(result.outcomes)
    return db, result


def test_sweep_runs_each_point_once_and_finishes_it(swept: tuple[Path, object]) -> None:
    db, result = swept
    runs = expand(tiny_spec("grid", sweep=SWEEP))
    ids = [run.run_id for run in runs]
    assert len(set(ids)) == 4
    assert result.skipped == [] and result.failed == []
    assert result.outcomes == {run_id: RunOutcome("finished", 40) for run_id in ids}
    with Store(db, readonly=True) as store:
        frame = store.runs_frame()
        assert sorted(frame["run_id"]) == sorted(ids)
        assert set(frame["status"]) == {"finished"}
        assert set(frame["steps_done"]) == {40}
        stats = store.layer_stats_frame()
        for run_id in ids:
            steps = sorted(stats[stats["run_id"] == run_id]["step"].unique().tolist())
            assert steps == list(range(0, 40, 5))
    assert duplicated_keys(db) == {"layer_stats": 0, "metrics": 0, "histograms": 0}


def test_rerun_skips_every_stored_run_and_writes_nothing(swept: tuple[Path, object]) -> None:
    db, first = swept
    before = row_counts(db)
    assert before["runs"] == 4 and before["layer_stats"] > 0 and before["metrics"] > 0
    started: list[str] = []
    again = run_sweep(
        tiny_spec("grid", sweep=SWEEP), db, events=RunnerEvents(on_start=lambda run: started.append(run.run_id))
    )
    assert sorted(again.skipped) == sorted(first.outcomes)
    assert again.outcomes == {} and started == []
    assert row_counts(db) == before


def test_two_workers_store_the_same_numbers_as_one(swept: tuple[Path, object], tmp_path: Path) -> None:
    db_one, _ = swept
    db_two = tmp_path / "two.db"
    ended: list[str] = []
    result = run_sweep(
        tiny_spec("grid", sweep=SWEEP),
        db_two,
        workers=2,
        events=RunnerEvents(on_end=lambda run, outcome: ended.append(run.run_id)),
    )
    assert len(ended) == 4 and result.failed == []
    assert {o.status for o in result.outcomes.values()} == {"finished"}
    one, two = stored_frames(db_one), stored_frames(db_two)
    assert sorted(one) == sorted(two)
    for run_id in one:
        # Exact: the workers train with one torch thread, and so does this test process.
        assert_frame_equal(one[run_id][0], two[run_id][0], check_exact=True)
        assert_frame_equal(one[run_id][1], two[run_id][1], check_exact=True)
    assert row_counts(db_one) == row_counts(db_two)


def test_diverged_run_is_stored_with_its_rows_and_skipped_next_time(tmp_path: Path) -> None:
    db = tmp_path / "diverged.db"
    spec = tiny_spec("boom", model={"activation": "relu"}, optim={"lr": 1e3}, probe={"every": 1})
    (run,) = expand(spec)
    outcome = execute_run(run, db)
    assert outcome.status == "diverged"
    with Store(db, readonly=True) as store:
        info = store.run(run.run_id)
        steps = set(store.layer_stats_frame([run.run_id])["step"].tolist())
    assert (info["status"], info["diverged_at"], info["steps_done"]) == (
        "diverged",
        outcome.diverged_at,
        outcome.diverged_at,
    )
    assert set(range(outcome.diverged_at)) <= steps  # what led up to it is kept
    _, todo = plan(spec, db)
    assert todo == []


# ------------------------------------------------------------------------------ kill and resume

# With histograms every step adds ~400 rows, so the writer commits every ~50 steps: a run killed
# midway has rows in the database that the resumed run must replace, not add to.
KILL_STEPS = 100


def wait_for_partial_sweep(db: Path, process: subprocess.Popen, timeout_s: float = 40.0) -> str:
    """Poll until one run is finished and another is running with rows committed; return the latter."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the sweep ended (exit {process.returncode}) before it could be killed midway")
        try:
            finished = count(db, "SELECT COUNT(*) FROM runs WHERE status = 'finished'")
            running = count(
                db,
                "SELECT runs.run_id FROM runs JOIN layer_stats USING (run_id) WHERE status = 'running' LIMIT 1",
            )
        except Exception:  # not created or not migrated yet
            finished, running = 0, None
        if finished >= 1 and running is not None:
            return running
        time.sleep(0.02)
    pytest.fail(f"no finished run beside a running one with rows within {timeout_s:g} s")


def test_resume_after_kill_stores_every_run_once(tmp_path: Path) -> None:
    spec_path = tmp_path / "kill.toml"
    spec_path.write_text(
        tiny_toml(
            "kill", steps=KILL_STEPS, every=1, extra="histograms = true\nflush_every = 10", sweep="seeds = [0, 1]"
        )
    )
    db = tmp_path / "killed.db"
    executable = shutil.which("gradientflow") or str(Path(sys.executable).parent / "gradientflow")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as this process: same numbers as the fresh run below
    process = subprocess.Popen(
        [executable, "run", str(spec_path), "--db", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    try:
        interrupted = wait_for_partial_sweep(db, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    partial = count(db, "SELECT COUNT(*) FROM layer_stats WHERE run_id = ?", (interrupted,))
    assert 0 < partial < KILL_STEPS * 7  # 7 rows per step: a run cut short

    spec = load(spec_path)
    result = run_sweep(spec, db)
    assert result.failed == []
    assert list(result.outcomes) == [interrupted]  # only the killed run is redone
    assert len(result.skipped) == 1

    fresh = tmp_path / "fresh.db"
    run_sweep(spec, fresh)
    ids = [run.run_id for run in expand(spec)]
    for path in (db, fresh):
        assert count(path, "SELECT COUNT(*) FROM runs") == 2
        assert count(path, "SELECT COUNT(DISTINCT run_id) FROM runs WHERE status = 'finished'") == 2
        assert duplicated_keys(path) == {"layer_stats": 0, "metrics": 0, "histograms": 0}
    for run_id in ids:
        for table in ("layer_stats", "metrics", "histograms"):
            sql = f"SELECT COUNT(*) FROM {table} WHERE run_id = ?"
            assert count(db, sql, (run_id,)) == count(fresh, sql, (run_id,)), (run_id, table)
    assert count(db, "SELECT COUNT(*) FROM layer_stats WHERE run_id = ?", (interrupted,)) == KILL_STEPS * 7
    resumed, uninterrupted = stored_frames(db), stored_frames(fresh)
    for run_id in ids:
        assert_frame_equal(resumed[run_id][0], uninterrupted[run_id][0], check_exact=True)
        assert_frame_equal(resumed[run_id][1], uninterrupted[run_id][1], check_exact=True)
