"""The runner: expand a spec, skip what is stored, hand runs to a backend, store what comes back.

`run_sweep` is the entry point; `execute_runs` trains a given list of runs. Backends: local
processes (`runner.local`) or Ray tasks (`runner.ray_backend`); workers only train
(`runner.tasks`) and the driver's `Recorder` alone writes the database (`runner.recorder`).
"""

from gradientflow.runner.local import MAX_RETRIES
from gradientflow.runner.recorder import Recorder
from gradientflow.runner.resources import check_memory, estimate_run_bytes
from gradientflow.runner.sweep import (
    BACKENDS,
    MAX_GROUP,
    VECTORIZE_MODES,
    Backend,
    RunnerEvents,
    SweepResult,
    Vectorize,
    check_data,
    execute_group,
    execute_run,
    execute_runs,
    group_runs,
    plan,
    run_sweep,
)
from gradientflow.runner.tasks import Observer, load_run_dataset, software_versions

__all__ = [
    "RunnerEvents",
    "SweepResult",
    "Observer",
    "Vectorize",
    "VECTORIZE_MODES",
    "Backend",
    "BACKENDS",
    "MAX_GROUP",
    "MAX_RETRIES",
    "Recorder",
    "plan",
    "run_sweep",
    "execute_run",
    "execute_runs",
    "execute_group",
    "group_runs",
    "check_data",
    "check_memory",
    "estimate_run_bytes",
    "software_versions",
    "load_run_dataset",
]
