"""Yang et al. (2019): the per-layer gradient profiles at init read back from the store, and their growth rates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ....spec import ExperimentSpec, expand
from ....store import Store
from .settings import TRIM

__all__ = ["GrowthFit", "fit_growth", "stored_profiles", "measure_rates"]


@dataclass(frozen=True)
class GrowthFit:
    """The fitted per-layer growth of grad_rms^2 of one (activation, B): the rate from the mean of
    log grad_rms^2 over samples, the standard error from the spread of per-sample rates."""

    rate: float
    stderr: float
    samples: int


def fit_growth(log_squares: np.ndarray, trim: int = TRIM) -> GrowthFit:
    """Fit log(grad_rms^2) = a - l log(lambda) over hidden layers trim+1 .. depth-trim.

    `log_squares` has shape (samples, depth): natural log of grad_rms^2 per hidden layer, input
    first. Returns the growth factor per layer toward the input (unitless) and its standard error.
    """
    samples, depth = log_squares.shape
    if depth - 2 * trim < 3:
        raise ValueError(f"depth {depth} leaves fewer than 3 layers to fit after trimming {trim} at each end")
    layers = np.arange(depth)[trim : depth - trim]
    middle = log_squares[:, trim : depth - trim]
    rate = math.exp(-np.polyfit(layers, middle.mean(axis=0), 1)[0])
    per_sample = [math.exp(-np.polyfit(layers, row, 1)[0]) for row in middle]
    stderr = float(np.std(per_sample, ddof=1) / math.sqrt(samples)) if samples > 1 else math.nan
    return GrowthFit(rate, stderr, samples)


def stored_profiles(store: Store, specs: list[ExperimentSpec]) -> pd.DataFrame:
    """One row per (activation, batch, seed, layer) at step 0 with its grad_rms."""
    runs = {r.run_id: r.spec for spec in specs for r in expand(spec)}
    stats = store.layer_stats_frame(list(runs), columns=("grad_rms",))
    stats = stats[(stats["step"] == 0) & (stats["kind"] == "activation")].copy()
    stats["activation"] = [runs[r].model.activation for r in stats["run_id"]]
    stats["batch"] = [runs[r].data.batch_size for r in stats["run_id"]]
    stats["seed"] = [runs[r].train.seed for r in stats["run_id"]]
    return stats.sort_values(["activation", "batch", "seed", "order"], kind="stable")


def measure_rates(profiles: pd.DataFrame) -> dict[tuple[str, int], GrowthFit]:
    """(activation, batch size) -> the fitted growth of grad_rms^2 per layer (see `fit_growth`)."""
    fits: dict[tuple[str, int], GrowthFit] = {}
    for (activation, batch), group in profiles.groupby(["activation", "batch"], sort=True):
        matrix = np.stack([np.log(g["grad_rms"].to_numpy(dtype="float64") ** 2) for _, g in group.groupby("seed")])
        fits[(str(activation), int(batch))] = fit_growth(matrix)
    return fits
