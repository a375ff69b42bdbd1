"""The PNG figures of the `yang2019-explosion` reproduction (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ....theory import bn_gradient_growth
from ..page import save_figure

if TYPE_CHECKING:
    from .measurement import GrowthFit

__all__ = ["draw_profiles", "draw_rates"]


def draw_profiles(profiles: pd.DataFrame, path: Path, trim: int) -> Path:
    """Figure 1: log10 grad_rms^2 per hidden layer at init, one panel per activation, one line per B
    (mean over seeds), with the theory's slope dashed through the fitted layers. Returns `path`."""
    activations = sorted(profiles["activation"].unique())
    batches = sorted(profiles["batch"].unique())
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(batches)))
    figure, axes = plt.subplots(1, len(activations), figsize=(5 * len(activations), 4.2), squeeze=False)
    for axis, activation in zip(axes[0], activations):
        for color, batch in zip(colors, batches):
            group = profiles[(profiles["activation"] == activation) & (profiles["batch"] == batch)]
            logs = np.stack([np.log10(g["grad_rms"].to_numpy(dtype="float64") ** 2) for _, g in group.groupby("seed")])
            mean = logs.mean(axis=0)
            layers = np.arange(1, len(mean) + 1)
            mean = mean - mean[-1]  # relative to the last hidden layer: lines of every B start at 0
            axis.plot(layers, mean, color=color, lw=1.6, label=f"B={batch}")
            slope = math.log10(bn_gradient_growth(activation, int(batch)))
            fitted = slice(trim, len(mean) - trim)
            anchor = mean[fitted].mean() + slope * layers[fitted].mean()
            axis.plot(layers, anchor - slope * layers, color=color, lw=1, ls="--")
        axis.set_title(f"BN-{activation}")
        axis.set_xlabel("hidden layer (1 = input side)")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("log10 grad_rms² relative to last hidden layer")
    axes[0][0].legend(title="solid: measured\ndashed: lambda(B)", fontsize=8)
    figure.suptitle("Squared gradient at initialization grows toward the input (mean over seeds)")
    return save_figure(figure, path)


def draw_rates(fits: dict[tuple[str, int], GrowthFit], path: Path, published: dict[int, float] | None = None) -> Path:
    """Figure 2: fitted excess growth lambda - 1 per layer against batch size, with the theory's
    lambda(B) - 1 as a line and `published` (BN-ReLU table) as crosses; log-log axes, so rates
    close to 1 (BN-linear at large B) stay readable. Returns `path`."""
    activations = sorted({a for a, _ in fits})
    figure, axes = plt.subplots(1, len(activations), figsize=(5 * len(activations), 4.0), squeeze=False)
    for axis, activation in zip(axes[0], activations):
        # relu and linear are closed forms: a fine grid; tanh is Monte Carlo, so fewer points and samples.
        exact = activation in ("relu", "linear")
        grid = np.unique(np.geomspace(4, 256, 40 if exact else 7).round().astype(int))
        theory = [bn_gradient_growth(activation, int(b), samples=None if exact else 20_000) - 1 for b in grid]
        axis.plot(grid, theory, color="black", lw=1.2, label="theory lambda(B) - 1")
        if activation == "relu" and published:
            axis.plot(
                list(published), [v - 1 for v in published.values()], "x", color="black", ms=7, label="published table"
            )
        points = sorted((batch, fit) for (name, batch), fit in fits.items() if name == activation)
        axis.errorbar([b for b, _ in points], [f.rate - 1 for _, f in points],
                      yerr=[f.stderr if math.isfinite(f.stderr) else 0.0 for _, f in points],
                      fmt="o", color="tab:red", capsize=3, label="measured (fit) - 1")  # fmt: skip
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_title(f"BN-{activation}")
        axis.set_xlabel("batch size B")
        axis.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("excess growth of grad_rms² per layer (lambda - 1)")
    axes[0][0].legend(fontsize=8)
    figure.suptitle("Measured per-layer growth rate against Yang et al.'s lambda(B)")
    return save_figure(figure, path)
