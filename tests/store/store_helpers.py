"""Builders shared by the store tests (a module with a unique name, importable from any test)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradientflow.records import LAYER_STAT_COLUMNS, RunInfo

VERSIONS = {"python": "3.11.7", "torch": "2.13.0", "gradientflow": "0.1.0"}


def make_info(run_id: str = "a1b2c3d4", **spec_changes: object) -> RunInfo:
    """A run record whose spec is a small nested dict; `spec_changes` replace model fields."""
    spec = {"model": {"depth": 4, "width": 16, "norm": "none", **spec_changes}, "train": {"lr": 0.1}}
    return RunInfo(run_id=run_id, name=f"run {run_id}", spec=spec, seed=7, versions=VERSIONS)


def layer_frame(step: int, layers: int = 3, seed: int = 0, extra: bool = True) -> pd.DataFrame:
    """A per-layer frame as the probe writes it: one activation row per layer, some NaN stats."""
    rng = np.random.default_rng(seed + 1000 * step)
    columns: dict[str, object] = {
        "step": step,
        "layer": [f"body.{i}.act" for i in range(layers)],
        "order": list(range(layers)),
        "kind": "activation",
        "module_type": "Tanh",
        "activation": "tanh",
    }
    columns.update({column: rng.normal(size=layers) for column in LAYER_STAT_COLUMNS})
    columns["bn_input_mean"] = np.nan  # no batch norm in this model: stored as NULL
    if extra:
        columns["pre_p2.5"] = rng.normal(size=layers)
    frame = pd.DataFrame(columns)
    return frame
