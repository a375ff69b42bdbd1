"""The PNG figures of the `glorot2010-fig2` reproduction (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ..page import save_figure

if TYPE_CHECKING:
    from .measurement import Trace

__all__ = ["draw_activations", "draw_jacobians"]


def draw_activations(traces: dict[str, Trace], path: Path) -> Path:
    """Figure 2 of the paper, one panel per variant: each hidden layer's mean sigmoid output over
    training (line) with +- one std (band), on 300 fixed test examples. Returns `path`."""
    figure, axes = plt.subplots(1, len(traces), figsize=(5.2 * len(traces), 4.2), squeeze=False, sharey=True)
    for axis, (variant, trace) in zip(axes[0], traces.items()):
        layers = trace.mean.shape[1]
        colors = plt.cm.viridis(np.linspace(0, 0.85, layers))
        steps = np.asarray(trace.steps)
        for layer in range(layers):
            mean, std = trace.mean[:, layer], trace.std[:, layer]
            axis.plot(steps, mean, "o-", ms=3, color=colors[layer], label=f"layer {layer + 1}")
            axis.fill_between(steps, mean - std, mean + std, color=colors[layer], alpha=0.15)
        axis.set_xscale("symlog", linthresh=10)
        axis.set_title(f"{variant} init" if "BN" not in variant else variant)
        axis.set_xlabel("updates (mini-batches of 10)")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("sigmoid output: mean ± std")
    axes[0][0].legend(fontsize=8, loc="lower left")
    figure.suptitle("Sigmoid activations on 300 fixed test examples\nduring training (Glorot & Bengio 2010, Fig. 2)")
    return save_figure(figure, path)


def draw_jacobians(jacobians: dict[tuple[str, str], np.ndarray], paper: dict[str, float], path: Path) -> Path:
    """Mean singular value of each hidden-to-hidden Jacobian at init, per activation and init,
    with the paper's tanh values as dashed lines. Returns `path`."""
    activations = sorted({a for a, _ in jacobians})
    figure, axes = plt.subplots(1, len(activations), figsize=(5 * len(activations), 3.8), squeeze=False, sharey=True)
    for axis, activation in zip(axes[0], activations):
        for offset, (variant, color) in enumerate((("standard", "tab:blue"), ("normalized", "tab:orange"))):
            values = jacobians.get((activation, variant))
            if values is None:
                continue
            positions = np.arange(2, len(values) + 2) + (offset - 0.5) * 0.35
            axis.bar(positions, values, width=0.35, color=color, label=f"{variant} init")
            if activation == "tanh" and variant in paper:
                axis.axhline(paper[variant], color=color, ls="--", lw=1, label=f"paper, {variant}: {paper[variant]}")
        axis.set_title(activation)
        axis.set_xlabel("Jacobian of layer i w.r.t. layer i-1")
        axis.set_xticks(np.arange(2, 5))
        axis.grid(alpha=0.3, axis="y")
        axis.set_ylim(0, 1.15)  # head room for the legend above the bars
        axis.legend(fontsize=7, loc="upper left", ncol=2)
    axes[0][0].set_ylabel("mean singular value at init")
    figure.suptitle("Layer-to-layer Jacobians at initialization\n(Glorot & Bengio 2010, sec. 4.2)")
    return save_figure(figure, path)
