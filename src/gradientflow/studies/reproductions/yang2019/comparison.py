"""Yang et al. (2019): the measured growth rates beside the theory's and the published ones, and the page's notes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ....theory import bn_gradient_growth
from ..base import Comparison
from .measurement import GrowthFit
from .settings import PUBLISHED_RELU, TOLERANCE

__all__ = ["rate_rows", "explosion_row", "deviation_notes", "excess_notes"]


def rate_rows(fits: dict[tuple[str, int], GrowthFit]) -> list[Comparison]:
    """One row per (activation, batch size): the measured growth rate of grad_rms^2 per layer beside lambda(B)."""
    rows = []
    rule = f"|measured / lambda(B) - 1| <= {TOLERANCE:.0%}"
    for (activation, batch), fit in sorted(fits.items()):
        theory = bn_gradient_growth(activation, batch)
        relative = fit.rate / theory - 1
        paper = {
            "relu": f"{PUBLISHED_RELU[batch]:.3f} (published table)" if batch in PUBLISHED_RELU else f"{theory:.3f}",
            "linear": f"(B-2)/(B-3) = {theory:.4f}",
        }.get(activation, f"{theory:.3f} (our Monte Carlo of the paper's formula; no published number)")
        excess = (fit.rate - 1) / (theory - 1) - 1
        nets = "1 net" if fit.samples == 1 else f"{fit.samples} nets"
        note = f"{relative:+.1%} from theory {theory:.4f} (excess lambda - 1: {excess:+.0%}); {nets}"
        if abs(relative) > TOLERANCE:
            note += "; likely cause: finite width (512) or too few layers/samples for this B"
        ours = f"{fit.rate:.3f} ± {fit.stderr:.3f}" if math.isfinite(fit.stderr) else f"{fit.rate:.3f} (one net)"
        fits_rule = bool(abs(relative) <= TOLERANCE)
        rows.append(
            Comparison(
                f"BN-{activation}, B={batch}: growth of grad_rms^2 per layer", paper, ours, fits_rule, rule, note
            )
        )
    return rows


def explosion_row(profiles: pd.DataFrame) -> Comparison:
    """Every net's first-layer grad_rms above its last layer's: the explosion the paper describes."""
    ratios = []
    for _, group in profiles.groupby(["activation", "batch", "seed"]):
        values = group["grad_rms"].to_numpy(dtype="float64")
        ratios.append(values[0] / values[-1])
    smallest = min(ratios)
    return Comparison(
        "gradient at layer 1 / at the last hidden layer, at init",
        "> 1 for every BN net (gradient explosion)",
        f"smallest over {len(ratios)} nets: {smallest:.3g}",
        bool(smallest > 1),
        "ratio > 1 for every net",
    )


def deviation_notes(fits: dict[tuple[str, int], GrowthFit]) -> list[str]:
    """The largest deviation from lambda(B), the mean deviation per batch size, and its likely cause."""
    deviation = {key: fit.rate / bn_gradient_growth(*key) - 1 for key, fit in fits.items()}
    worst = max(deviation, key=lambda key: abs(deviation[key]))
    batches = sorted({batch for _, batch in fits})
    by_batch = {b: float(np.mean([d for (_, bb), d in deviation.items() if bb == b])) for b in batches}
    notes = [
        f"Largest relative distance from lambda(B): {deviation[worst]:+.1%} (BN-{worst[0]}, B={worst[1]}). "
        "Mean by batch size: " + ", ".join(f"B={b} {d:+.1%}" for b, d in by_batch.items()) + "."
    ]
    smallest = batches[0]
    below = sorted(a for (a, bb), d in deviation.items() if bb == smallest and d < 0)
    if by_batch[smallest] < -0.03 and smallest <= 5:
        notes.append(
            f"At B={smallest} the measured rate is below lambda(B) for {', '.join(below)} (mean {by_batch[smallest]:+.1%}). Likely cause: the fit measures the typical "
            "(log-average) growth of one net, lambda the growth of the mean over nets; they agree when per-layer factors "
            "fluctuate little, but BN's factor holds 1/||G h||^2, an inverse chi-square with B-1 degrees of freedom whose "
            "variance is infinite for B <= 5, so the mean is carried by rare large layers that a 512-wide, 64-deep net seldom shows."
        )
    return notes


def excess_notes(fits: dict[tuple[str, int], GrowthFit]) -> list[str]:
    """BN-linear's excess growth lambda - 1 against theory per B: the hardest part to measure at large B."""
    linear = sorted((b, f) for (a, b), f in fits.items() if a == "linear")
    if not linear:
        return []
    shown = ", ".join(f"B={b} {(f.rate - 1) / (bn_gradient_growth('linear', b) - 1) - 1:+.0%}" for b, f in linear)
    return [
        f"BN-linear's excess growth lambda - 1, measured against theory: {shown}. Where lambda is within a few percent of 1 "
        "the whole net changes the gradient by less than a factor of a few, so seed-to-seed noise and finite-width "
        "corrections (likely causes) are a large fraction of lambda - 1 though a small one of lambda."
    ]
