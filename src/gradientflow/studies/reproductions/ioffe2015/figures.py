"""The PNG figures of the ioffe2015-fig1 page: Figure 1 (a), (b, c) as the paper draws them, and the range of settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..page import new_figure, save_figure
from .measurement import Measured
from .settings import UNIT

__all__ = ["draw_accuracy", "draw_percentiles", "draw_range"]

_NORMS = (("none", "without BN", "tab:blue", "--"), ("batch", "with BN", "tab:red", "-"))
_PERCENTILE_STYLE = {"p15": ":", "p50": "-", "p85": "--"}


def draw_accuracy(m: Measured, folder: Path, paper_axis: bool) -> Path:
    """Figure 1(a): test accuracy (fraction) against training step, both nets; returns the PNG's path.

    `paper_axis` clips the y axis to the paper's 0.7-1.0.
    """
    figure, axes = new_figure(width=5.5, height=4)
    ax = axes[0][0]
    for norm, label, colour, style in _NORMS:
        curve = m.accuracy[norm]
        ax.plot(curve.index, curve.values, style, color=colour, label=label)
    if paper_axis:
        ax.set_ylim(0.7, 1.0)  # the paper's axis: the first evaluations of the no-BN net fall below it
    ax.set(xlabel="training step", ylabel="test accuracy", title=f"(a) test accuracy ({m.setting.label})")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return save_figure(figure, folder / "fig1a-test-accuracy.png")


SMOOTH = 10  # records in the running mean drawn over the raw per-batch percentiles (60 examples each: noisy)


def _draw_percentiles(ax: Any, frame: pd.DataFrame, colour: str) -> None:
    for column, style in _PERCENTILE_STYLE.items():
        if column in frame:
            ax.plot(frame.index, frame[column].values, style, color=colour, linewidth=0.5, alpha=0.3)
            smooth = frame[column].rolling(SMOOTH, min_periods=1).mean()
            ax.plot(frame.index, smooth.values, style, color=colour, linewidth=1.5, label=f"{column[1:]}th percentile")


def draw_percentiles(m: Measured, folder: Path, which: str) -> Path:
    """Figure 1(b, c): the 15/50/85th percentiles of the sigmoid input (input units) against step; returns the PNG's path.

    `which` is ``unit`` (the observed unit, as the paper) or ``layer`` (all units pooled, the probe's columns).
    """
    frames = m.unit if which == "unit" else m.layer
    figure, axes = new_figure(columns=2, width=4.8, height=3.6, sharey=True)
    for ax, (norm, label, colour, _), letter in zip(axes[0], _NORMS, "bc"):
        _draw_percentiles(ax, frames[norm], colour)
        ax.set(xlabel=f"training step (faint: each record; bold: mean of {SMOOTH})", title=f"({letter}) {label}")
        ax.grid(alpha=0.3)
    subject = f"unit #{UNIT}'s" if which == "unit" else "all units' (pooled)"
    axes[0][0].set_ylabel(f"last hidden layer: {subject}\nsigmoid input")
    axes[0][0].legend(loc="best", fontsize=8)
    name = "fig1bc-unit-input-percentiles.png" if which == "unit" else "fig1bc-layer-input-percentiles.png"
    return save_figure(figure, folder / name)


def draw_range(measured: list[Measured], folder: Path) -> Path:
    """One column per setting: test accuracy on top, the unit's median input and 15-85th band below; returns the PNG's path."""
    figure, axes = new_figure(columns=len(measured), rows=2, width=3.6, height=3.0)
    for column, m in enumerate(measured):
        top, bottom = axes[0][column], axes[1][column]
        for norm, label, colour, style in _NORMS:
            top.plot(m.accuracy[norm].index, m.accuracy[norm].values, style, color=colour, label=label)
            frame = m.unit[norm]
            if not frame.empty:
                bottom.plot(frame.index, frame["p50"].values, style, color=colour, linewidth=1)
                bottom.fill_between(
                    frame.index, frame["p15"].values, frame["p85"].values, color=colour, alpha=0.2, linewidth=0
                )
        top.set(title=m.setting.label, ylim=(0.0, 1.0))
        bottom.set(xlabel="training step")
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[1][0].set_ylabel(f"unit #{UNIT} input\n(median, 15-85th band)")
    axes[0][0].legend(loc="best", fontsize=8)
    return save_figure(figure, folder / "range.png")
