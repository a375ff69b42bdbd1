"""Declarative experiment specs: TOML in, validated frozen pydantic models out, sweeps expanded into runs.

`load`, `loads` and `from_dict` report every problem of a spec at once, as a `SpecError` whose lines
name the dotted key, the bad value and what is allowed::

    `model.activation`: 'sigmod' is not one of sigmoid, tanh, ... (did you mean 'sigmoid'?)

`expand` turns the optional ``[sweep]`` grid into `ResolvedRun`s, each with a stable `run_id`: the same
resolved experiment gets the same id on every machine and in every process, whatever its name.

One module per seam: `schema` (the sections), `problems` (message text), `loading`, `sweeps`
(checking, counting and walking the grid) and `runs` (resolved runs and their ids).
Layer 2: standard library, pydantic and `gradientflow.errors` / `gradientflow.records` only (no torch).
"""

from gradientflow.spec.loading import MAX_NESTING, from_dict, load, loads
from gradientflow.spec.runs import ResolvedRun, compute_run_id, count_runs, expand, iter_runs
from gradientflow.spec.schema import (
    ACTIVATION_NAMES,
    ARCHITECTURES,
    DATASET_NAMES,
    INIT_NAMES,
    MAX_SEED,
    NORM_NAMES,
    NORM_POSITIONS,
    OPTIMIZER_NAMES,
    DataSpec,
    ExperimentSpec,
    ModelSpec,
    OptimSpec,
    ProbeSpec,
    TrainSpec,
)
from gradientflow.spec.sweeps import DEFAULT_MAX_SWEEP_RUNS, MAX_RUNS_ENV, max_sweep_runs

__all__ = [
    "ARCHITECTURES",
    "ACTIVATION_NAMES",
    "NORM_NAMES",
    "NORM_POSITIONS",
    "INIT_NAMES",
    "DATASET_NAMES",
    "OPTIMIZER_NAMES",
    "MAX_SEED",
    "MAX_NESTING",
    "DEFAULT_MAX_SWEEP_RUNS",
    "MAX_RUNS_ENV",
    "ModelSpec",
    "DataSpec",
    "OptimSpec",
    "TrainSpec",
    "ProbeSpec",
    "ExperimentSpec",
    "ResolvedRun",
    "load",
    "loads",
    "from_dict",
    "expand",
    "iter_runs",
    "count_runs",
    "max_sweep_runs",
    "compute_run_id",
]
