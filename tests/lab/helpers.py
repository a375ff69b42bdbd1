"""Tiny specs (seconds, not minutes) and database counts shared by the lab tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from gradientflow.spec import ExperimentSpec, from_dict

# 240 examples of 16 features: a full epoch is 12 batches of 20, so 40 steps cross epochs.
TINY_DATA: dict[str, Any] = {
    "name": "synthetic_blobs",
    "batch_size": 20,
    "options": {"n_train": 240, "n_test": 60, "n_features": 16},
}


def tiny_spec(
    name: str = "tiny",
    *,
    model: dict[str, Any] | None = None,
    optim: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    probe: dict[str, Any] | None = None,
    sweep: dict[str, Any] | None = None,
) -> ExperimentSpec:
    """A depth-3, width-16 sigmoid MLP on 240 synthetic examples, 40 steps, probe every 5 steps."""
    raw: dict[str, Any] = {
        "name": name,
        "model": {"arch": "mlp", "depth": 3, "width": 16, **(model or {})},
        "data": TINY_DATA,
        "optim": {"name": "sgd", "lr": 0.1, **(optim or {})},
        "train": {"steps": 40, "eval_every": 15, "seed": 0, **(train or {})},
        "probe": {"every": 5, **(probe or {})},
    }
    if sweep:
        raw["sweep"] = sweep
    return from_dict(raw)


def tiny_toml(name: str = "tiny", *, steps: int = 40, every: int = 5, extra: str = "", sweep: str = "") -> str:
    """The TOML text of a tiny spec; `extra` goes into [probe], `sweep` is the [sweep] body."""
    text = f"""
name = "{name}"

[model]
arch = "mlp"
depth = 3
width = 16

[data]
name = "synthetic_blobs"
batch_size = 20
options = {{ n_train = 240, n_test = 60, n_features = 16 }}

[optim]
name = "sgd"
lr = 0.1

[train]
steps = {steps}
eval_every = {max(1, steps // 2)}

[probe]
every = {every}
{extra}
"""
    if sweep:
        text += f"\n[sweep]\n{sweep}\n"
    return text


def count(db: Path, sql: str, parameters: tuple[Any, ...] = ()) -> Any:
    """The single value of `sql` against `db`, opened read-only (safe while another process writes)."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute(sql, parameters).fetchone()[0]
    finally:
        connection.close()


# Identity of one stored row per table: a resumed run that kept stale rows repeats these keys.
ROW_KEYS = {
    "layer_stats": "run_id, step, layer",
    "metrics": "run_id, step, name",
    "histograms": "run_id, step, layer, quantity, bin_left",
}


def row_counts(db: Path) -> dict[str, int]:
    """Rows per table (runs, metrics, layer_stats, histograms)."""
    return {table: count(db, f"SELECT COUNT(*) FROM {table}") for table in ("runs", *ROW_KEYS)}


def duplicated_keys(db: Path) -> dict[str, int]:
    """Per table: rows minus distinct identity keys (0 when no row is duplicated)."""
    return {
        table: count(db, f"SELECT COUNT(*) FROM {table}")
        - count(db, f"SELECT COUNT(*) FROM (SELECT DISTINCT {keys} FROM {table})")
        for table, keys in ROW_KEYS.items()
    }


@contextmanager
def one_thread() -> Iterator[None]:
    """Train with one torch thread inside the block, as runner workers do; restore the count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
