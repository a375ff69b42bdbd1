"""Hand-made store frames (runs_frame / layer_stats_frame / metrics_frame shaped) for the claim rules."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

SPEC_DEFAULTS: dict[str, Any] = {
    "model.activation": "sigmoid",
    "model.norm": "none",
    "model.init": "pytorch_default",
    "model.init_std": 0.01,
    "model.depth": 5,
    "model.width": 100,
    "model.weight_scale": 1.0,
    "optim.lr": 0.1,
    "data.batch_size": 60,
}


def runs(*specs: dict[str, Any]) -> pd.DataFrame:
    """One run per dict of dotted spec overrides (plus optional run_id, status and seed)."""
    records = []
    for index, spec in enumerate(specs):
        spec = dict(spec)
        record = {
            "run_id": spec.pop("run_id", f"r{index}"),
            "status": spec.pop("status", "finished"),
            "seed": spec.pop("seed", 0),
        }
        record.update({f"spec.{k}": v for k, v in {**SPEC_DEFAULTS, **spec}.items()})
        records.append(record)
    return pd.DataFrame(records)


def act(run_id: str, step: int, order: int, **values: float) -> dict[str, Any]:
    """An activation row; unspecified statistics are NaN."""
    return {"run_id": run_id, "step": step, "layer": f"act{order}", "order": order, "kind": "activation", **values}


def row(run_id: str, step: int, order: int, kind: str, layer: str, **values: float) -> dict[str, Any]:
    return {"run_id": run_id, "step": step, "layer": layer, "order": order, "kind": kind, **values}


def stats(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in (
        "grad_rms",
        "saturated_frac",
        "pre_mean",
        "pre_std",
        "pre_min",
        "pre_max",
        "pre_p15",
        "pre_p50",
        "pre_p85",
        "bn_gamma_norm",
        "weight_grad_norm",
    ):
        if column not in frame.columns:
            frame[column] = math.nan
    return frame


def gradient_profile(run_id: str, grads: list[float], step: int = 0) -> list[dict[str, Any]]:
    """Activation rows whose grad_rms are `grads`, first layer first."""
    return [act(run_id, step, i + 1, grad_rms=g) for i, g in enumerate(grads)]


def metrics(values: dict[str, float]) -> pd.DataFrame:
    """Final test_accuracy per run id."""
    return pd.DataFrame([{"run_id": r, "step": 100, "name": "test_accuracy", "value": v} for r, v in values.items()])
