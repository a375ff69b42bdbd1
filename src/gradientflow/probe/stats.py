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
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch

from ..records import percentile_column as percentile_name
from . import native
from .activations import SaturationRule

__all__ = [
    "as_units_layout",
    "units_shape",
    "pre_activation_stats",
    "raw_pre_activation_stats",
    "raw_gradient_stats",
    "raw_pre_activation_stats_of",
    "raw_gradient_stats_of",
    "PreActivationJob",
    "GradientJob",
    "raw_columns",
    "derive",
    "RAW_HEAD",
    "RAW_GRADIENT",
    "percentile_positions",
    "batch_moments_per_unit",
]


def as_units_layout(x: torch.Tensor, unit_dim: int = 1) -> torch.Tensor:
    """Return `x` viewed as ``(batch, units, rest)``; a 1-d tensor is one example of `len(x)` units."""
    if x.dim() <= 1:
        return x.reshape(1, -1, 1)
    if unit_dim % x.dim() != 1:
        x = x.movedim(unit_dim, 1)
    return x.reshape(x.shape[0], x.shape[1], -1)


def units_shape(shape: Sequence[int], unit_dim: int = 1) -> tuple[int, int, int] | None:
    """Return ``(batch, units, rest)`` of a contiguous tensor of `shape` read as `as_units_layout`
    would lay it out, without moving memory; None when its units must be moved first."""
    if len(shape) <= 1:
        return (1, shape[0] if shape else 1, 1)
    if unit_dim % len(shape) != 1:
        return None
    return (shape[0], shape[1], math.prod(shape[2:]))


def percentile_positions(n: int, percentiles: Sequence[float]) -> torch.Tensor:
    """Indices of the lower neighbours, then of the upper ones, of each percentile among `n` sorted
    values (numpy's default 'linear' method); `derive` interpolates between them on the host."""
    positions = torch.tensor([q / 100.0 * (n - 1) for q in percentiles], dtype=torch.float64)
    lower = positions.floor().long()
    return torch.cat((lower, torch.clamp(lower + 1, max=n - 1)))


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
    if flat.device.type == "cpu":
        # numpy's vectorised sort is about 10x faster than torch's on the CPU, and a CPU tensor's
        # memory is numpy's: no copy to a host leaves the device here
        return torch.from_numpy(np.sort(flat.contiguous().numpy(), axis=1))
    return flat.sort(dim=1).values


def _nonfinite_count(flat: torch.Tensor, check: torch.Tensor) -> torch.Tensor:
    """Count NaN/Inf per row. On the CPU (where a sync is free) the pass is skipped when `check` is finite."""
    if flat.device.type == "cpu" and bool(torch.isfinite(check).all()):
        return torch.zeros(flat.shape[0], device=flat.device)
    return flat.shape[1] - torch.isfinite(flat).sum(dim=1, dtype=torch.float32)


@functools.lru_cache(maxsize=64)
def _positions_on(n: int, percentiles: tuple[float, ...], device: torch.device) -> torch.Tensor:
    return percentile_positions(n, percentiles).to(device)


def raw_columns(percentiles: Sequence[float]) -> tuple[str, ...]:
    """Names of the sufficient statistics kept on the device for one activation row (see `derive`)."""
    lows = tuple(f"q_low_{i}" for i in range(len(percentiles)))
    highs = tuple(f"q_high_{i}" for i in range(len(percentiles)))
    return RAW_HEAD + lows + highs


#: Sufficient statistics computed on the device; the published columns are derived from them on
#: the host at flush time (`derive`), vectorised over every flushed step. Fewer device ops per step
#: is what keeps the probe cheap for small networks, where each op costs more than its arithmetic.
RAW_HEAD: tuple[str, ...] = (
    "n",
    "units",
    "n_sample",
    "pivot",
    "centered_sum",
    "centered_norm",
    "pre_min",
    "pre_max",
    "saturated_count",
    "dead_count",
    "nonfinite_count",
)
RAW_GRADIENT: tuple[str, ...] = ("grad_sum", "grad_norm")


def raw_pre_activation_stats(
    x: torch.Tensor, rule: SaturationRule, percentiles: Sequence[float], max_percentile_samples: int = 4096
) -> torch.Tensor:
    """Sufficient statistics of pre-activations stacked as ``(layers, batch, units, rest)``.

    Returns float32 ``(layers, len(raw_columns(percentiles)))``; `derive` turns them into means,
    stds, fractions and percentiles. Percentiles are exact up to `max_percentile_samples` elements
    per layer, else taken over a fixed random subsample of that size.
    """
    fast = _native_pre_activation(list(x.unbind(0)), rule, percentiles, max_percentile_samples)
    return fast if fast is not None else _torch_pre_activation(x, rule, percentiles, max_percentile_samples)


def raw_pre_activation_stats_of(
    layers: Sequence[torch.Tensor],
    rule: SaturationRule,
    percentiles: Sequence[float],
    max_percentile_samples: int = 4096,
    unit_dim: int = 1,
    threads: int | None = None,
) -> torch.Tensor:
    """`raw_pre_activation_stats` of same-shaped tensors given as a list, each read as
    `as_units_layout(tensor, unit_dim)` (a ``(batch, units, rest)`` tensor is taken as it is).

    On the CPU with the native library the layers are read in place (no stacking copy), with
    `threads` threads (default: PyTorch's count).
    """
    job = PreActivationJob(layers, rule, percentiles, max_percentile_samples, unit_dim, threads)
    job.run()
    return job.table()


def _native_ready(layers: Sequence[torch.Tensor]) -> bool:
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in layers) and native.library() is not None


class _NativePlan:
    """Per-shape constants and output arrays of the native pre-activation path, made once.

    Every numpy or ctypes call costs microseconds, the same order as the C pass itself for small
    layers, so the per-step path only fills preallocated arrays (their addresses are kept as ints:
    numpy's ``.ctypes`` attribute alone costs microseconds). Its scratch arrays serve one running
    job at a time; each job has its own output arrays.
    """

    def __init__(
        self, count: int, n: int, units: int, percentiles: tuple[float, ...], max_samples: int, threads: int
    ) -> None:
        self.n_sample = min(n, max_samples)
        self.positions = (
            _sample_positions(n, max_samples, torch.device("cpu")).numpy().astype(np.int64) if n > max_samples else None
        )
        wanted = np.concatenate(
            ([self.n_sample // 2], percentile_positions(self.n_sample, percentiles).numpy())
        )  # pivot, lows, highs
        ks, self.where = np.unique(wanted, return_inverse=True)
        self.ks = np.ascontiguousarray(ks, dtype=np.int64)
        self.scratch = np.empty(4 * self.n_sample + 256, dtype=np.uint32)
        self.unit_counts = np.empty(threads * units, dtype=np.int32)
        self.threads = threads
        self.addresses = {name: getattr(self, name).ctypes.data for name in ("ks", "scratch", "unit_counts")} | {
            "positions": None if self.positions is None else self.positions.ctypes.data
        }


@functools.lru_cache(maxsize=128)
def _plan(
    count: int, n: int, units: int, percentiles: tuple[float, ...], max_samples: int, threads: int
) -> _NativePlan:
    return _NativePlan(count, n, units, percentiles, max_samples, threads)


class PreActivationJob:
    """`raw_pre_activation_stats_of` in three parts: the constructor prepares the C call, `run`
    makes it (one call), `table` reads the result (after `run`).

    Without the C library (or for a rule the C pass does not know) `run` does nothing and
    `table` computes with torch.
    """

    def __init__(
        self,
        layers: Sequence[torch.Tensor],
        rule: SaturationRule,
        percentiles: Sequence[float],
        max_samples: int = 4096,
        unit_dim: int = 1,
        threads: int | None = None,
    ) -> None:
        self.layers, self.rule, self.percentiles, self.max_samples, self.unit_dim = (
            list(layers),
            rule,
            tuple(percentiles),
            max_samples,
            unit_dim,
        )
        self._arguments: tuple[Any, ...] | None = None
        if rule.comparisons_only and _native_ready(self.layers):
            self._prepare(threads or torch.get_num_threads())

    def _prepare(self, threads: int) -> None:
        layout = units_shape(self.layers[0].shape, self.unit_dim)
        layers = self.layers
        if layout is None:
            layers = [as_units_layout(t, self.unit_dim) for t in layers]
            layout = tuple(layers[0].shape)  # type: ignore[assignment]
        self._kept = layers = [t if t.is_contiguous() else t.contiguous() for t in layers]  # alive until run() returns
        batch, units, rest = layout  # type: ignore[misc]
        self.n, self.units = batch * units * rest, units
        plan = self._plan = _plan(len(layers), self.n, units, self.percentiles, self.max_samples, threads)
        self.picked = np.empty((len(layers), len(plan.ks)), dtype=np.float32)
        self.pivots = np.empty(len(layers), dtype=np.float32)
        self.moments = np.empty(
            (len(layers), 7)
        )  # centered sum, centered sum of squares, min, max, saturated, dead, nonfinite
        at, rule = plan.addresses, self.rule
        self._arguments = (
            native.pointers(layers),
            len(layers),
            at["positions"],
            plan.n_sample,
            at["ks"],
            len(plan.ks),
            int(plan.where[0]),
            at["scratch"],
            self.picked.ctypes.data,
            self.pivots.ctypes.data,
            batch,
            units,
            rest,
            int(rule.lower is not None),
            rule.lower or 0.0,
            int(rule.upper is not None),
            rule.upper or 0.0,
            int(rule.inclusive),
            *(rule.bands[0] if rule.bands else (math.nan, math.nan)),
            at["unit_counts"],
            self.moments.ctypes.data,
            plan.threads,
        )

    def run(self) -> None:
        """Make the C call (the sample's order statistics by radix select, then one pass per layer)."""
        if self._arguments is not None:
            native.library().gf_activation_stats(*self._arguments)  # type: ignore[union-attr]

    def table(self) -> torch.Tensor:
        """Return float32 ``(layers, len(raw_columns(percentiles)))``, as `raw_pre_activation_stats`."""
        if self._arguments is None:
            stacked = torch.stack([as_units_layout(t, self.unit_dim) for t in self.layers])
            return _torch_pre_activation(stacked, self.rule, self.percentiles, self.max_samples)
        plan, count = self._plan, len(self.layers)
        picked = self.picked[:, plan.where]  # (layers, 1 + 2 * percentiles): pivot, lows, highs
        table = np.empty((count, len(RAW_HEAD) + picked.shape[1] - 1), dtype=np.float32)
        table[:, :3] = (self.n, self.units, plan.n_sample)
        table[:, 3] = self.pivots
        with np.errstate(over="ignore"):  # sums beyond float32's range are recorded as inf, as torch would
            table[:, 4:11] = self.moments
            table[:, 5] = np.sqrt(self.moments[:, 1])  # the centered norm, from its square
        table[:, 11:] = picked[:, 1:]
        return torch.from_numpy(table)


class GradientJob:
    """`raw_gradient_stats_of` split like `PreActivationJob`: prepare here, `run` anywhere, `table` here."""

    def __init__(self, grads: Sequence[torch.Tensor], threads: int | None = None) -> None:
        self.grads = list(grads)
        self._arguments: tuple[Any, ...] | None = None
        if _native_ready(self.grads):
            self._kept = kept = [t if t.is_contiguous() else t.contiguous() for t in self.grads]
            self._out = np.empty((len(kept), 2))
            self._arguments = (
                native.pointers(kept),
                len(kept),
                kept[0].numel(),
                self._out.ctypes.data,
                threads or torch.get_num_threads(),
            )

    def run(self) -> None:
        """Make the C call: sum and sum of squares of each gradient."""
        if self._arguments is not None:
            native.library().gf_sum_sumsq(*self._arguments)  # type: ignore[union-attr]

    def table(self) -> torch.Tensor:
        """Return float32 ``(layers, 2)``: sum and L2 norm of each gradient."""
        if self._arguments is None:
            flat = torch.stack([t.float().reshape(-1) for t in self.grads])
            return torch.stack((flat.sum(dim=1), torch.linalg.vector_norm(flat, dim=1)), dim=1)
        with np.errstate(over="ignore"):
            return torch.from_numpy(np.column_stack((self._out[:, 0], np.sqrt(self._out[:, 1]))).astype(np.float32))


def _native_pre_activation(
    layers: list[torch.Tensor],
    rule: SaturationRule,
    percentiles: Sequence[float],
    max_samples: int,
    unit_dim: int = 1,
    threads: int | None = None,
) -> torch.Tensor | None:
    job = PreActivationJob(layers, rule, percentiles, max_samples, unit_dim, threads)
    if job._arguments is None:
        return None
    job.run()
    return job.table()


def _torch_pre_activation(
    x: torch.Tensor, rule: SaturationRule, percentiles: Sequence[float], max_percentile_samples: int
) -> torch.Tensor:
    x = x.float()
    layers, batch, units, rest = x.shape
    flat = x.reshape(layers, -1)  # (layers, batch * units * rest)
    ordered = _sorted_sample(flat, max_percentile_samples)
    n_sample = ordered.shape[1]
    ends = ordered.index_select(1, _positions_on(n_sample, tuple(percentiles), ordered.device))
    pivot = ordered[:, n_sample // 2, None]  # the sample median: close to the mean, robust
    centered = flat - pivot
    if n_sample == flat.shape[1]:  # the sample is everything: its ends are the extremes
        low, high = ordered[:, 0], ordered[:, -1]
    else:
        low, high = flat.amin(dim=1), flat.amax(dim=1)
    per_unit = rule.saturated(x).sum(dim=(1, 3))  # (layers, units): saturated elements per unit
    columns = [
        pivot[:, 0],
        centered.sum(dim=1),
        torch.linalg.vector_norm(centered, dim=1),
        low,
        high,
        per_unit.sum(dim=1),
        (per_unit == batch * rest).sum(dim=1),
    ]
    head = torch.stack([c.float() for c in columns], dim=1)
    nonfinite = _nonfinite_count(flat, head[:, 2])
    sizes = torch.empty((layers, 3), dtype=torch.float32, device=x.device)
    sizes[:, 0], sizes[:, 1], sizes[:, 2] = flat.shape[1], units, n_sample  # fills: a copy from the host would sync
    return torch.cat((sizes, head, nonfinite[:, None], ends), dim=1)


def raw_gradient_stats(g: torch.Tensor) -> torch.Tensor:
    """Sufficient statistics of gradients stacked as ``(layers, ...)``: float32 ``(layers, 2)`` = sum, L2 norm."""
    if _native_ready([g]):
        return raw_gradient_stats_of(list(g.unbind(0)))
    flat = g.float().reshape(g.shape[0], -1)
    return torch.stack((flat.sum(dim=1), torch.linalg.vector_norm(flat, dim=1)), dim=1)


def raw_gradient_stats_of(grads: Sequence[torch.Tensor], threads: int | None = None) -> torch.Tensor:
    """`raw_gradient_stats` of same-sized tensors given as a list (read in place on the CPU, with
    `threads` threads; default: PyTorch's count)."""
    job = GradientJob(grads, threads)
    job.run()
    return job.table()


def derive(raw: dict[str, np.ndarray], percentiles: Sequence[float]) -> dict[str, np.ndarray]:
    """Published columns from sufficient statistics (float64 arrays of equal length); NaN where absent.

    pre_mean = pivot + sum(x - pivot)/n; pre_std = sqrt(|x - pivot|^2/n - (sum/n)^2); percentiles
    interpolate linearly between the sorted sample's neighbours (numpy's default method);
    grad_rms = |g| / sqrt(n). The activation and gradient columns only: the weight and BatchNorm
    columns (update_ratio among them) are layout.RowLayout.derive's.
    """
    n = raw["n"]
    offset = raw["centered_sum"] / n
    out: dict[str, np.ndarray] = {
        "pre_mean": raw["pivot"] + offset,
        "pre_std": np.sqrt(np.clip(raw["centered_norm"] ** 2 / n - offset**2, 0, None)),
        "pre_min": raw["pre_min"],
        "pre_max": raw["pre_max"],
    }
    for i, q in enumerate(percentiles):
        position = q / 100.0 * (raw["n_sample"] - 1)
        weight = position - np.floor(position)
        low, high = raw[f"q_low_{i}"], raw[f"q_high_{i}"]
        out[percentile_name(q)] = low + (high - low) * weight
    out["saturated_frac"] = raw["saturated_count"] / n
    out["dead_units_frac"] = raw["dead_count"] / raw["units"]
    out["nonfinite_count"] = raw["nonfinite_count"]
    grad_mean = raw["grad_sum"] / n
    grad_rms = raw["grad_norm"] / np.sqrt(n)
    out.update(grad_rms=grad_rms, grad_norm=raw["grad_norm"], grad_mean=grad_mean)
    out["grad_std"] = np.sqrt(np.clip(grad_rms**2 - grad_mean**2, 0, None))
    return out


def pre_activation_stats(
    x: torch.Tensor, rule: SaturationRule, percentiles: Sequence[float], max_percentile_samples: int = 4096
) -> torch.Tensor:
    """Published pre-activation columns (mean, std, min, max, percentiles, saturated, dead, nonfinite)
    for layers stacked as ``(layers, batch, units, rest)``: a convenience over raw + `derive`."""
    raw = raw_pre_activation_stats(x, rule, percentiles, max_percentile_samples).double().numpy()
    names = raw_columns(percentiles)
    table = {name: raw[:, i] for i, name in enumerate(names)} | {"grad_sum": np.nan, "grad_norm": np.nan}
    # the scalar NaN of the gradient columns joins derive's numpy arithmetic by broadcasting
    out = derive(cast("dict[str, np.ndarray]", table), percentiles)
    wanted = [
        "pre_mean",
        "pre_std",
        "pre_min",
        "pre_max",
        *(percentile_name(q) for q in percentiles),
        "saturated_frac",
        "dead_units_frac",
        "nonfinite_count",
    ]
    return torch.tensor(np.stack([np.broadcast_to(out[c], raw.shape[:1]) for c in wanted], axis=1), dtype=torch.float32)


def batch_moments_per_unit(x: torch.Tensor) -> torch.Tensor:
    """For inputs stacked as ``(layers, batch, units, rest)``: ``(layers, 2)`` = mean over units of
    the batch mean, and mean over units of the batch variance (ddof=0), as BatchNorm computes them."""
    if _native_ready([x]):
        layers = [t.contiguous() for t in x.detach().unbind(0)]
        _, batch, units, rest = x.shape
        scratch, out = np.empty(3 * units), np.empty((len(layers), 2))
        native.library().gf_unit_moments(  # type: ignore[union-attr]
            native.pointers(layers),
            len(layers),
            batch,
            units,
            rest,
            scratch.ctypes.data,
            out.ctypes.data,
            torch.get_num_threads(),
        )
        return torch.from_numpy(out.astype(np.float32))
    x = x.float()
    per_unit = x.shape[1] * x.shape[3]
    unit_mean = x.sum(dim=(1, 3), keepdim=True) / per_unit  # (layers, 1, units, 1)
    spread = torch.linalg.vector_norm((x - unit_mean).reshape(x.shape[0], -1), dim=1).square() / x[0].numel()
    return torch.stack((unit_mean.reshape(x.shape[0], -1).mean(dim=1), spread), dim=1)
