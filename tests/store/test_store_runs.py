"""Run bookkeeping: begin (and restart), finish, completed ids, id prefixes, the runs table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import pytest
from store_helpers import VERSIONS, layer_frame, make_info

from gradientflow.errors import StoreError
from gradientflow.records import MetricPoint, RunInfo, RunOutcome
from gradientflow.store import Store


def row_counts(store: Store, run_id: str) -> dict[str, int]:
    db = store._connection()
    return {
        table: db.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()[0]
        for table in ("metrics", "layer_stats", "histograms")
    }


def histogram_frame(step: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"step": [step], "layer": ["fc"], "quantity": ["grad"], "bin_left": [0.0], "bin_right": [1.0], "count": [5]}
    )


def write_steps(store: Store, run_id: str, steps: range) -> None:
    for step in steps:
        store.write_layer_stats(run_id, layer_frame(step))
        store.write_metrics(run_id, [MetricPoint(step, "train_loss", 1.0 / (step + 1))])
        store.write_histograms(run_id, histogram_frame(step))


def test_begin_run_stores_metadata_in_utc(store: Store) -> None:
    info = make_info("abc123")
    store.begin_run(info, group_id="group7")
    run = store.run("abc123")
    assert run["status"] == "running" and run["steps_done"] == 0
    assert run["spec"] == info.spec and run["seed"] == 7 and run["name"] == "run abc123"
    assert (run["python_version"], run["torch_version"], run["gradientflow_version"]) == (
        VERSIONS["python"],
        VERSIONS["torch"],
        VERSIONS["gradientflow"],
    )
    assert run["group_id"] == "group7" and run["finished_at"] is None
    started = datetime.fromisoformat(run["started_at"])
    assert started.tzinfo == UTC
    assert abs((datetime.now(UTC) - started).total_seconds()) < 60
    spec_json = store._connection().execute("SELECT spec_json FROM runs").fetchone()[0]
    assert spec_json == '{"model":{"depth":4,"norm":"none","width":16},"train":{"lr":0.1}}'


def test_restarting_a_partial_run_deletes_its_rows_so_nothing_is_duplicated(store: Store) -> None:
    info = make_info("abc123")
    store.begin_run(info)
    write_steps(store, "abc123", range(5))  # then the worker was killed
    store.begin_run(make_info("other"))
    write_steps(store, "other", range(2))

    store.begin_run(info)  # resume: start this run over
    assert row_counts(store, "abc123") == {"metrics": 0, "layer_stats": 0, "histograms": 0}
    assert row_counts(store, "other") == {"metrics": 2, "layer_stats": 6, "histograms": 2}
    write_steps(store, "abc123", range(8))
    store.finish_run("abc123", RunOutcome("finished", steps_done=8))

    stats = store.layer_stats_frame(["abc123"])
    assert not stats.duplicated(["step", "layer"]).any() and len(stats) == 8 * 3
    assert store.metrics_frame(["abc123"])["step"].tolist() == list(range(8))


def test_restarting_a_failed_run_clears_its_outcome(store: Store) -> None:
    info = make_info("abc123")
    store.begin_run(info)
    store.finish_run("abc123", RunOutcome("failed", steps_done=3, message="CUDA out of memory"))
    assert store.run("abc123")["message"] == "CUDA out of memory"
    store.begin_run(info)
    run = store.run("abc123")
    assert (run["status"], run["message"], run["finished_at"], run["steps_done"]) == ("running", None, None, 0)


@pytest.mark.parametrize("status", ["finished", "diverged"])
def test_begin_run_refuses_a_completed_run(store: Store, status: str) -> None:
    info = make_info("abc123")
    store.begin_run(info)
    write_steps(store, "abc123", range(2))
    store.finish_run("abc123", RunOutcome(status, steps_done=2, diverged_at=1 if status == "diverged" else None))
    with pytest.raises(StoreError, match=f"already {status}"):
        store.begin_run(info)
    assert row_counts(store, "abc123")["layer_stats"] == 6  # the refused call deleted nothing


def test_finish_run_records_the_outcome(store: Store) -> None:
    store.begin_run(make_info("abc123"))
    store.finish_run("abc123", RunOutcome("diverged", steps_done=41, diverged_at=40, message="loss is inf"))
    run = store.run("abc123")
    assert (run["status"], run["steps_done"], run["diverged_at"], run["message"]) == ("diverged", 41, 40, "loss is inf")
    assert datetime.fromisoformat(run["finished_at"]) >= datetime.fromisoformat(run["started_at"])
    with pytest.raises(StoreError, match="a run ends as one of finished, diverged, failed"):
        store.finish_run("abc123", RunOutcome("running", steps_done=1))
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.finish_run("nope", RunOutcome("finished", steps_done=1))


def test_completed_run_ids_and_status_filter(store: Store) -> None:
    store.queue_runs([make_info("q1"), make_info("q2")])
    outcomes = {"fin": "finished", "div": "diverged", "bad": "failed"}
    for run_id, status in outcomes.items():
        store.begin_run(make_info(run_id))
        store.finish_run(run_id, RunOutcome(status, steps_done=1))
    store.begin_run(make_info("live"))
    assert store.completed_run_ids() == {"fin", "div"}
    assert store.run_ids("queued") == ["q1", "q2"]
    assert store.run_ids("running") == ["live"]
    assert sorted(store.run_ids()) == sorted(["q1", "q2", *outcomes, "live"])
    store.queue_runs([make_info("fin")])  # queueing never touches a stored run
    assert store.run("fin")["status"] == "finished"
    with pytest.raises(StoreError, match="unknown run status 'done'"):
        store.run_ids("done")


def test_prefixes_resolve_like_git(store: Store) -> None:
    for run_id in ("3f9a01", "3f9b77", "c0ffee"):
        store.begin_run(make_info(run_id))
    assert store.resolve_run_ids(["c0", "3f9a", "3f9b77", "c0ffee"]) == ["c0ffee", "3f9a01", "3f9b77"]
    assert store.run("3f9b")["run_id"] == "3f9b77"

    with pytest.raises(StoreError) as caught:
        store.resolve_run_ids(["3f9"])
    message = str(caught.value)
    assert "prefix '3f9' is ambiguous" in message and "3f9a01, 3f9b77" in message
    assert "give more characters" in message

    with pytest.raises(StoreError) as caught:
        store.run("abc")
    message = str(caught.value)
    assert message.startswith(f"no run 'abc' in {store.path}; known runs: ")
    assert "3f9a01" in message and "c0ffee" in message

    with pytest.raises(StoreError, match="no run ''"):
        store.resolve_run_ids([""])


def test_unknown_run_in_an_empty_store_says_to_run_first(store: Store) -> None:
    with pytest.raises(StoreError, match="known runs: none .*gradientflow run"):
        store.metrics_frame(["abc"])


def test_long_lists_of_known_runs_are_shortened(store: Store) -> None:
    store.queue_runs([make_info(f"run{i:02d}") for i in range(25)])
    with pytest.raises(StoreError, match=r"\(and 15 more\)"):
        store.run("zzz")


def test_runs_frame_has_metadata_the_spec_and_flattened_spec_columns(store: Store) -> None:
    store.begin_run(make_info("aaa", depth=4))
    store.begin_run(make_info("bbb", depth=16))
    store.finish_run("bbb", RunOutcome("diverged", steps_done=5, diverged_at=4))
    runs = store.runs_frame().set_index("run_id")
    assert runs.loc["bbb", "spec"]["model"]["depth"] == 16
    assert runs["spec.model.depth"].tolist() == [4, 16]
    assert runs["spec.train.lr"].tolist() == [0.1, 0.1]
    assert runs.loc["bbb", "diverged_at"] == 4 and pd.isna(runs.loc["aaa", "diverged_at"])
    assert {"status", "seed", "created_at", "torch_version", "group_id"} <= set(runs.columns)
    assert "spec_json" not in runs.columns


def test_empty_runs_frame_keeps_its_columns(store: Store) -> None:
    runs = store.runs_frame()
    assert runs.empty and {"run_id", "status", "spec"} <= set(runs.columns)


def test_resolve_accepts_full_run_infos_from_the_caller(store: Store, begun: Callable[..., RunInfo]) -> None:
    info = begun("abcdef")
    assert store.resolve_run_ids([info.run_id, "abc"]) == ["abcdef"]  # duplicates dropped
