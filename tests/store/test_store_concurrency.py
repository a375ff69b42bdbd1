"""Several worker processes write one file at once: every row lands exactly once, none waits in vain."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path
from typing import Any

from store_helpers import layer_frame, make_info

from gradientflow.records import MetricPoint, RunOutcome
from gradientflow.store import Store

WORKERS = 4
BATCHES = 50
LAYERS = 5  # rows per layer-stats batch


def write_one_run(path: str, worker: int, start: Any, errors: Any) -> None:
    """A runner worker: opens its own connection (to a file that may not exist yet) and writes."""
    try:
        start.wait(timeout=60)  # every worker creates/migrates the new file at the same moment
        with Store(path, busy_timeout_s=30) as store:
            run_id = f"run{worker}"
            store.begin_run(make_info(run_id))
            for step in range(BATCHES):
                if worker % 2:  # half the workers commit each batch themselves, half buffer
                    store.write_layer_stats(run_id, layer_frame(step, layers=LAYERS, seed=worker))
                    store.write_metrics(run_id, [MetricPoint(step, "train_loss", float(worker))])
                else:
                    with store.writer(run_id, flush_rows=LAYERS + 1) as writer:
                        writer.add_layer_stats(layer_frame(step, layers=LAYERS, seed=worker))
                        writer.add_metrics([MetricPoint(step, "train_loss", float(worker))])
            store.finish_run(run_id, RunOutcome("finished", steps_done=BATCHES))
    except BaseException:
        errors.put(f"worker {worker}:\n{traceback.format_exc()}")
        raise


def test_four_processes_write_one_new_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    errors = context.Queue()
    workers = [
        context.Process(target=write_one_run, args=(str(path), worker, start, errors)) for worker in range(WORKERS)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    assert not reported, "\n".join(reported)
    assert [process.exitcode for process in workers] == [0] * WORKERS

    with Store(path, readonly=True) as store:
        assert store.completed_run_ids() == {f"run{worker}" for worker in range(WORKERS)}
        stats = store.layer_stats_frame()
        metrics = store.metrics_frame()
    assert len(stats) == WORKERS * BATCHES * LAYERS
    assert not stats.duplicated(["run_id", "step", "layer"]).any()
    assert stats.groupby("run_id")["step"].nunique().tolist() == [BATCHES] * WORKERS
    assert stats["pre_p2.5"].notna().all()
    assert len(metrics) == WORKERS * BATCHES
    assert not metrics.duplicated(["run_id", "step", "name"]).any()
    for worker in range(WORKERS):  # each worker's rows are its own, not another's
        mine = stats[stats["run_id"] == f"run{worker}"].reset_index(drop=True)
        expected = layer_frame(7, layers=LAYERS, seed=worker)
        assert mine[mine["step"] == 7]["grad_norm"].tolist() == expected["grad_norm"].tolist()
        assert set(metrics[metrics["run_id"] == f"run{worker}"]["value"]) == {float(worker)}
