"""Print what a sweep pays per task on Ray against the local backend, and what the single writer sustains.

(a) per-task overhead: N one-step runs (a depth-1 MLP on 64 synthetic examples: training costs
    next to nothing) go through ``execute_runs`` on the local backend in this process, then as
    Ray tasks on a local instance (started beforehand, so its start-up is reported apart). The
    difference per task is what Ray adds: submitting, scheduling, pickling the returned records.
(b) the writer: a `Recorder` stores layer-stats frames of 7 rows x 30 columns, as the probe sends
    them, with no training at all; rows per second is the ceiling the single writer puts on a
    sweep, to compare with what the workers produce (rows per step x steps per second x workers).

    python benchmarks/ray_overhead.py [--tasks N] [--cpus C] [--frames F]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gradientflow.records import (
    LAYER_STAT_COLUMNS,
    RunOutcome,
)
from gradientflow.runner import Recorder, RunnerEvents, execute_runs
from gradientflow.runner.tasks import Ended, Rows
from gradientflow.spec import expand, from_dict


def tiny_sweep(tasks: int) -> list:
    return expand(
        from_dict(
            {
                "name": "overhead",
                "model": {"depth": 1, "width": 8},
                "data": {
                    "name": "synthetic_blobs",
                    "batch_size": 16,
                    "options": {"n_train": 64, "n_test": 16, "n_features": 8},
                },
                "train": {"steps": 1, "eval_every": 1},
                "probe": {"every": 1},
                "sweep": {"seeds": list(range(tasks))},
            }
        )
    )


def per_task_seconds(tasks: int, cpus: int) -> tuple[float, float, float]:
    """Return (local s/task in this process, Ray wall s/task with `cpus` workers, Ray start-up s).

    Ray's wall time per task times `cpus` is a task's cost on one CPU; minus the local figure, Ray's overhead.
    """
    import ray

    with tempfile.TemporaryDirectory() as folder:
        runs = tiny_sweep(tasks + 1)
        execute_runs(runs[-1:], Path(folder) / "warm_local.db", vectorize="off")  # first-run costs (native code)
        runs = runs[:-1]
        start = time.perf_counter()
        execute_runs(runs, Path(folder) / "local.db", vectorize="off")
        local = (time.perf_counter() - start) / tasks
        start = time.perf_counter()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        startup = time.perf_counter() - start
        try:
            execute_runs(
                runs[:cpus], Path(folder) / "warm.db", cpus, vectorize="off", backend="ray"
            )  # workers import torch
            start = time.perf_counter()
            execute_runs(runs, Path(folder) / "ray.db", cpus, vectorize="off", backend="ray")
            on_ray = (time.perf_counter() - start) / tasks
        finally:
            ray.shutdown()
    return local, on_ray, startup


def writer_rows_per_second(frames: int, runs: int = 10) -> tuple[float, int]:
    """Return (layer-stats rows stored per second by one Recorder, database bytes per row)."""
    rng = np.random.default_rng(0)
    columns = {c: rng.normal(size=7) for c in LAYER_STAT_COLUMNS}
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "writer.db"
        sweep = tiny_sweep(runs)
        with Recorder(db, RunnerEvents()) as recorder:
            for run in sweep:
                recorder.claim([run])
            batch = [
                pd.DataFrame(
                    {
                        "step": index,
                        "layer": [f"l{i}" for i in range(7)],
                        "order": range(7),
                        "kind": "activation",
                        "module_type": "Sigmoid",
                        "activation": "sigmoid",
                        **columns,
                    }
                )
                for index in range(frames)
            ]
            start = time.perf_counter()
            for index, frame in enumerate(batch):
                recorder.handle(Rows(sweep[index % runs].run_id, layer_stats=frame))
            for run in sweep:
                recorder.handle(Ended(run.run_id, RunOutcome("finished", frames)))
            seconds = time.perf_counter() - start
        size = sum(path.stat().st_size for path in Path(folder).iterdir())
    return frames * 7 / seconds, size // (frames * 7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--frames", type=int, default=20_000)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # as every worker: the local figure is one CPU's, like Ray's per-task CPU time
    rows, per_row = writer_rows_per_second(args.frames)
    print(
        f"(b) single writer: {rows:,.0f} layer-stats rows/s ({args.frames * 7:,} rows), {per_row} bytes per row on disk"
    )
    local, on_ray, startup = per_task_seconds(args.tasks, args.cpus)
    print(f"(a) {args.tasks} one-step tasks: local {local * 1e3:.0f} ms/task in-process; Ray {on_ray * 1e3:.0f} ms/task wall "
          f"on {args.cpus} CPUs = {on_ray * args.cpus * 1e3:.0f} CPU-ms/task, overhead {(on_ray * args.cpus - local) * 1e3:+.0f} "
          f"ms/task; Ray start-up {startup:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
