"""The demo: a 6-layer sigmoid MLP trained with and without BatchNorm, same seed and init.

It shows the vanishing gradient of the plain network and what BN changes, per layer, in a
minute on two cores, using the offline default data. Nothing is stored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ..analysis import activation_rows, gradient_ratio
from ..records import MetricPoint
from ..runner import load_run_dataset
from ..spec import ExperimentSpec, from_dict
from ..train import TrainCallbacks, train

__all__ = ["DemoResult", "demo_spec", "run_demo"]

VARIANTS = (("plain", "none"), ("batchnorm", "batch"))


def demo_spec(norm: str, steps: int = 400, seed: int = 0) -> ExperimentSpec:
    """Return the demo's spec: 6 x 100 sigmoid MLP, PyTorch's default init, SGD lr 0.1, batch 60."""
    return from_dict(
        {
            "name": f"demo-{norm}",
            "model": {
                "arch": "mlp",
                "depth": 6,
                "width": 100,
                "activation": "sigmoid",
                "norm": norm,
                "init": "pytorch_default",
            },
            "data": {"name": "mnist5k", "batch_size": 60},
            "optim": {"name": "sgd", "lr": 0.1},
            "train": {"steps": steps, "eval_every": steps, "seed": seed},
            "probe": {"every": 10},
        }
    )


@dataclass(frozen=True)
class DemoResult:
    """Per-layer table (means over the recorded steps), and per variant: gradient ratios and accuracy."""

    layers: pd.DataFrame  # layer, grad_rms_plain, grad_rms_batchnorm, saturated_plain, saturated_batchnorm
    ratio_init: dict[str, float]  # first/last activation grad_rms at step 0
    ratio_mean: dict[str, float]  # same ratio of the per-layer means over training
    test_accuracy: dict[str, float]  # fraction, after the last step


def run_demo(steps: int = 400, seed: int = 0, on_progress: Callable[[str, int, int], None] | None = None) -> DemoResult:
    """Train both variants and return the comparison (see `DemoResult`)."""
    columns: dict[str, pd.DataFrame] = {}
    ratio_init: dict[str, float] = {}
    ratio_mean: dict[str, float] = {}
    accuracy: dict[str, float] = {}
    for label, norm in VARIANTS:
        spec = demo_spec(norm, steps, seed)
        metrics: list[MetricPoint] = []
        callbacks = TrainCallbacks(
            on_metrics=metrics.extend,
            on_progress=functools.partial(on_progress, label) if on_progress else None,
            keep_frames=True,
        )
        train(spec, load_run_dataset(spec), callbacks)
        stats = pd.concat(callbacks.frames, ignore_index=True)
        rows = activation_rows(stats)
        means = rows.groupby("layer", sort=False)[["grad_rms", "saturated_frac"]].mean()
        columns[label] = means
        ratio_init[label] = gradient_ratio(stats, 0)
        ratio_mean[label] = float(means["grad_rms"].iloc[0] / means["grad_rms"].iloc[-1])
        accuracy[label] = next(p.value for p in reversed(metrics) if p.name == "test_accuracy")
    table = pd.DataFrame(
        {
            "layer": columns["plain"].index,
            "grad_rms_plain": columns["plain"]["grad_rms"].to_numpy(),
            "grad_rms_batchnorm": columns["batchnorm"]["grad_rms"].to_numpy(),
            "saturated_plain": columns["plain"]["saturated_frac"].to_numpy(),
            "saturated_batchnorm": columns["batchnorm"]["saturated_frac"].to_numpy(),
        }
    )
    return DemoResult(table, ratio_init, ratio_mean, accuracy)
