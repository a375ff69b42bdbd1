"""Faults and concurrency: killed workers, two sweeps on one database, parents killed, sizes that cannot fit."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pandas.testing import assert_frame_equal

from gradientflow.errors import TrainingError
from gradientflow.runner import check_memory, estimate_run_bytes, execute_runs, run_sweep
from gradientflow.spec import expand

from .faults import kill_own_process
from .helpers import count, duplicated_keys, tiny_spec, tiny_toml
from .test_runner import stored_frames

ROOT = Path(__file__).resolve().parents[2]


def entry_point() -> str:
    return str(Path(sys.executable).parent / "gradientflow")


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ------------------------------------------------------------------------------ killed workers


def test_a_killed_worker_is_replaced_its_task_retried_once_then_failed(tmp_path: Path) -> None:
    runs = expand(tiny_spec("kill", sweep={"seeds": [0, 1]}))
    # Three kills among at most four tries: one run dies twice (failed), the other dies once, then finishes.
    observe = functools.partial(kill_own_process, str(tmp_path / "kills"), 3)
    outcomes = execute_runs(runs, tmp_path / "k.db", workers=2, vectorize="off", observe=observe)
    assert len(list((tmp_path / "kills").iterdir())) == 3  # the workers really died
    assert sorted(o.status for o in outcomes.values()) == ["failed", "finished"]
    (failed,) = [o for o in outcomes.values() if o.status == "failed"]
    assert failed.message == "its worker process was killed by SIGKILL, 2 times; the run was not retried again"
    assert duplicated_keys(tmp_path / "k.db") == {"layer_stats": 0, "metrics": 0, "histograms": 0}
    (retried,) = [run for run in runs if outcomes[run.run_id].status == "finished"]
    execute_runs([retried], tmp_path / "plain.db", vectorize="off")
    killed, plain = stored_frames(tmp_path / "k.db"), stored_frames(tmp_path / "plain.db")
    # the retried run stored exactly what an undisturbed one stores (the observer only kills)
    assert_frame_equal(killed[retried.run_id][0], plain[retried.run_id][0], check_exact=True)
    assert_frame_equal(killed[retried.run_id][1], plain[retried.run_id][1], check_exact=True)


WORKER_OF_A_DOOMED_PARENT = """
import multiprocessing, time
from gradientflow.runner.local import _Worker
worker = _Worker(multiprocessing.get_context("spawn"))
print(worker.process.pid, flush=True)
time.sleep(120)
"""


def test_workers_exit_when_their_parent_is_killed() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    parent = subprocess.Popen(
        [sys.executable, "-c", WORKER_OF_A_DOOMED_PARENT], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        worker = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert alive(worker)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
    deadline = time.monotonic() + 30
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker), "the worker outlived its killed parent"


def count_or_zero(db: Path, sql: str) -> int:
    try:
        return count(db, sql)
    except Exception:  # not created yet
        return 0


# ------------------------------------------------------------------------------ two sweeps at once


def test_two_sweeps_of_one_spec_on_one_database_store_every_run_once(tmp_path: Path) -> None:
    spec = tmp_path / "shared.toml"
    spec.write_text(tiny_toml("shared", steps=60, every=5, sweep="seeds = [0, 1, 2, 3]"))
    db = tmp_path / "shared.db"
    command = [entry_point(), "run", str(spec), "--db", str(db), "--vectorize", "off"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    both = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=240)[0] for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs
    assert count(db, "SELECT COUNT(*) FROM runs WHERE status = 'finished'") == 4
    assert duplicated_keys(db) == {"layer_stats": 0, "metrics": 0, "histograms": 0}
    assert count(db, "SELECT COUNT(*) FROM layer_stats") == 4 * 12 * 7  # 12 recorded steps x 7 layers per run
    trained = sum(output.count(": finished") for output in outputs)
    assert trained == 4, outputs  # each run trained by one of the two, never both


# ------------------------------------------------------------------------------ sizes that cannot fit


@pytest.mark.parametrize(
    "model, data",
    [({"width": 100_000}, {}), ({"depth": 1_000_000}, {}), ({}, {"options": {"n_train": 10**12, "n_features": 16}})],
)
def test_runs_that_cannot_fit_are_refused_before_allocating(model: dict, data: dict, tmp_path: Path) -> None:
    spec = tiny_spec("huge", model=model)
    if data:
        spec = spec.model_copy(update={"data": spec.data.model_copy(update=data)})
    (run,) = expand(spec)
    assert estimate_run_bytes(spec) > 64e9
    with pytest.raises(TrainingError, match=r"needs about [\d,.]+ GB of memory .* more than this machine's 16.0 GB"):
        check_memory([run], available=16 * 10**9)
    with pytest.raises(TrainingError, match="reduce model.width"):
        run_sweep(spec, tmp_path / "huge.db")


def test_the_estimate_is_not_below_what_a_run_really_allocates() -> None:
    spec = tiny_spec("small", model={"width": 512, "depth": 4})
    parameters = 16 * 512 + 3 * 512 * 512 + 512 * 3  # exactly the MLP's weights
    assert estimate_run_bytes(spec) >= parameters * 4 * 4
    assert estimate_run_bytes(spec) < 1e9
