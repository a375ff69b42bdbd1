"""Pure tensor functions: the statistics the probe records, computed for a stack of layers at once.

Every function takes layers stacked along a leading dimension so that one call of a few tensor
ops serves all layers of the same shape (per-op dispatch, not arithmetic, dominates for small
networks). Inputs are laid out ``(layers, batch, units, rest)``: units are features for dense
layers and channels for convolutions; ``rest`` is the flattened spatial extent (1 for dense).
Nothing here syncs with the host.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import torch

from .activations import SaturationRule

__all__ = [
    "as_units_layout",
    "PRE_ACTIVATION_COLUMNS",
    "GRADIENT_COLUMNS",
    "pre_activation_stats",
    "gradient_stats",
    "percentile_positions",
    "batch_moments_per_unit",
]

#: Columns returned by `pre_activation_stats`, percentiles inserted after ``pre_max``.
PRE_ACTIVATION_COLUMNS: tuple[str, ...] = ("pre_mean", "pre_std", "pre_min", "pre_max")
_PRE_TAIL_COLUMNS: tuple[str, ...] = ("saturated_frac", "dead_units_frac", "nonfinite_count")
GRADIENT_COLUMNS: tuple[str, ...] = ("grad_rms", "grad_norm", "grad_mean", "grad_std")


def as_units_layout(x: torch.Tensor, unit_dim: int = 1) -> torch.Tensor:
    """Return `x` viewed as ``(batch, units, rest)``; a 1-d tensor is one example of `len(x)` units."""
    if x.dim() <= 1:
        return x.reshape(1, -1, 1)
    if unit_dim % x.dim() != 1:
        x = x.movedim(unit_dim, 1)
    return x.reshape(x.shape[0], x.shape[1], -1)


def percentile_positions(n: int, percentiles: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (lower index, upper index, weight) for numpy's default 'linear' percentile method on `n` sorted values."""
    positions = torch.tensor([q / 100.0 * (n - 1) for q in percentiles], dtype=torch.float64)
    lower = positions.floor().long()
    upper = torch.clamp(lower + 1, max=n - 1)
    weight = (positions - lower.double()).float()
    return lower, upper, weight


@functools.lru_cache(maxsize=64)
def _sample_positions(n: int, samples: int, device: torch.device) -> torch.Tensor:
    # A fixed pseudo-random subset: a regular stride would alias with the unit layout
    # (a stride equal to the width samples a single unit).
    generator = torch.Generator().manual_seed(n)
    return torch.randperm(n, generator=generator)[:samples].sort().values.to(device)


def _sorted_sample(flat: torch.Tensor, max_samples: int) -> torch.Tensor:
    """Sorted values along dim 1 of ``(layers, n)``: all of them, or a fixed random subset of `max_samples`."""
    n = flat.shape[1]
    if n > max_samples:
        flat = flat.index_select(1, _sample_positions(n, max_samples, flat.device))
    return flat.sort(dim=1).values


def _percentiles(ordered: torch.Tensor, percentiles: Sequence[float]) -> torch.Tensor:
    """Percentiles (numpy's linear interpolation) of each row of an already sorted ``(layers, n)``."""
    lower_and_upper, weight = _positions_on(ordered.shape[1], tuple(percentiles), ordered.device)
    low, high = ordered.index_select(1, lower_and_upper).chunk(2, dim=1)  # one gather for both
    return torch.lerp(low, high, weight)


def _moments(flat: torch.Tensor, pivot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, population std) along dim 1, from a sum and a norm of ``flat - pivot``.

    torch's std_mean is a slow single pass on CPU; a sum and a vectorised norm are several
    times faster. Shifting by a pivot near the mean (the sample median) avoids the cancellation
    of E[x^2] - E[x]^2 when the mean is large compared with the spread.
    """
    n = flat.shape[1]
    centered = flat - pivot
    offset = centered.sum(dim=1) / n
    mean_square = torch.linalg.vector_norm(centered, dim=1).square() / n
    return pivot[:, 0] + offset, (mean_square - offset.square()).clamp_min(0).sqrt()


def _nonfinite_count(flat: torch.Tensor, check: torch.Tensor) -> torch.Tensor:
    """Count NaN/Inf per row. On the CPU (where a sync is free) the pass is skipped when `check` is finite."""
    if flat.device.type == "cpu" and bool(torch.isfinite(check).all()):
        return torch.zeros(flat.shape[0], device=flat.device)
    return flat.shape[1] - torch.isfinite(flat).sum(dim=1, dtype=torch.float32)


@functools.lru_cache(maxsize=64)
def _positions_on(n: int, percentiles: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    lower, upper, weight = percentile_positions(n, percentiles)
    return torch.cat((lower, upper)).to(device), weight.to(device)


def pre_activation_stats(
    x: torch.Tensor,
    rule: SaturationRule,
    percentiles: Sequence[float],
    max_percentile_samples: int = 4096,
) -> torch.Tensor:
    """Statistics of pre-activations stacked as ``(layers, batch, units, rest)``.

    Returns a float32 tensor ``(layers, 4 + len(percentiles) + 3)``: mean, population std,
    min, max, the percentiles (numpy's linear interpolation; exact up to `max_percentile_samples`
    elements per layer, else over a fixed random subsample of that size), the saturated fraction of
    elements, the fraction of units saturated for every element of the batch, and the count of
    NaN/Inf elements.
    """
    x = x.float()
    layers = x.shape[0]
    flat = x.reshape(layers, -1)  # (layers, batch * units * rest)
    ordered = _sorted_sample(flat, max_percentile_samples)
    quantiles = _percentiles(ordered, percentiles)  # (layers, len(percentiles))
    mean, std = _moments(flat, ordered[:, ordered.shape[1] // 2, None])
    if ordered.shape[1] == flat.shape[1]:  # the sample is everything: its ends are the extremes
        low, high = ordered[:, 0], ordered[:, -1]
    else:
        low, high = flat.amin(dim=1), flat.amax(dim=1)
    mask = rule.saturated(x)  # (layers, batch, units, rest)
    saturated = mask.reshape(layers, -1).sum(dim=1, dtype=torch.float32) / flat.shape[1]
    dead = mask.amin(dim=(1, 3)).sum(dim=1, dtype=torch.float32) / x.shape[2]  # amin of bools: "all"
    nonfinite = _nonfinite_count(flat, std)
    head = torch.stack((mean, std, low, high), dim=1)
    tail = torch.stack((saturated, dead, nonfinite), dim=1)
    return torch.cat((head, quantiles, tail), dim=1)


def gradient_stats(g: torch.Tensor) -> torch.Tensor:
    """Statistics of gradients stacked as ``(layers, ...)``: a float32 tensor ``(layers, 4)``.

    Columns: root mean square over all elements, L2 norm, mean, population std.
    """
    layers = g.shape[0]
    flat = g.float().reshape(layers, -1)
    norm = torch.linalg.vector_norm(flat, dim=1)
    rms = norm / math.sqrt(flat.shape[1])
    # gradients are centred near 0 compared with their spread: no pivot needed
    mean = flat.sum(dim=1) / flat.shape[1]
    std = (rms.square() - mean.square()).clamp_min(0).sqrt()
    return torch.stack((rms, norm, mean, std), dim=1)


def batch_moments_per_unit(x: torch.Tensor) -> torch.Tensor:
    """For inputs stacked as ``(layers, batch, units, rest)``: ``(layers, 2)`` = mean over units of
    the batch mean, and mean over units of the batch variance (ddof=0), as BatchNorm computes them."""
    x = x.float()
    per_unit = x.shape[1] * x.shape[3]
    unit_mean = x.sum(dim=(1, 3), keepdim=True) / per_unit  # (layers, 1, units, 1)
    spread = torch.linalg.vector_norm((x - unit_mean).reshape(x.shape[0], -1), dim=1).square() / x[0].numel()
    return torch.stack((unit_mean.reshape(x.shape[0], -1).mean(dim=1), spread), dim=1)
