"""DistributedDataParallel: one table for the whole global batch, written by rank 0.

Each rank records its own shard of the batch. At every flush the ranks send their sufficient
statistics to rank 0 (one ``gather_object`` over a gloo group), which combines them into the
statistics of the concatenated batch; only rank 0 then calls the sink and keeps rows. Every
column is exact (to float rounding) except the percentiles:

- counts (``n``, saturated, non-finite) add up; min and max are the min and max over ranks;
- mean and std come from each rank's sum and sum of squares about its pivot, moved to one pivot;
- dead units: a unit is dead when it is saturated for every element of every rank's shard, so
  each rank sends its per-unit dead mask and rank 0 counts the units dead on all ranks;
- pre-activation gradients: DDP averages the weight gradients over ranks, so the loss it optimizes
  is the mean of the ranks' losses; the gradient of that mean with respect to a rank's
  pre-activation is the rank's own divided by the world size, and sum and norm are combined so;
- weight rows are the same on every rank (DDP keeps the replicas equal): rank 0's are kept;
- BatchNorm input moments are pooled per unit over the ranks' shards (count, mean, variance);
- percentiles: the mean over ranks of each rank's percentile (each rank's exact, or from its
  fixed subsample); for shards drawn from one distribution this is close to the pooled one;
- histograms: counts add up (fixed bins); gradients are binned divided by the world size.

Every rank must flush together: flushes happen when the buffer fills (the same step on every
rank when every rank runs the same schedule) and at ``close()``; ``frame()`` and ``flush()`` on an
open distributed probe are collective too. Closing because of an exception does not reduce (the
other ranks may never arrive); the unflushed rows are then dropped with a warning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import ProbeError
from .buffer import RowInfo
from .layout import RowLayout

__all__ = ["resolve_distributed", "unwrap_data_parallel", "RankReducer", "Drained"]

Drained = tuple[np.ndarray, list[int], list[set[int]]]
_SUMMED = ("n", "n_sample", "saturated_count", "nonfinite_count")


def resolve_distributed(option: bool | str) -> bool:
    """Return whether the probe reduces across ranks: `option` True (torch.distributed must be
    initialized), False, or "auto" (when it is initialized with more than one process)."""
    if option not in (True, False, "auto"):
        raise ProbeError(f"distributed must be True, False or 'auto', got {option!r}")
    ready = torch.distributed.is_available() and torch.distributed.is_initialized()
    if option is True and not ready:
        raise ProbeError(
            "distributed=True needs torch.distributed initialized first "
            "(torch.distributed.init_process_group(...)); use distributed='auto' to reduce only when it is"
        )
    return bool(option) and ready and torch.distributed.get_world_size() > 1


def unwrap_data_parallel(model: nn.Module) -> nn.Module:
    """Return the module a ``DistributedDataParallel`` wraps (`model` itself otherwise), so that
    layer names carry no ``module.`` prefix and match a single-process probe's."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        inner: nn.Module = model.module
        return inner
    return model


class RankReducer:
    """Gathers each flush's statistics on rank 0 and combines them (see the module doc)."""

    def __init__(self, layout: RowLayout) -> None:
        self.rank = torch.distributed.get_rank()
        self.world = torch.distributed.get_world_size()
        self.layout = layout  # the raw columns of the buffers it combines
        self._group: Any = None
        # per recorded slot: layer -> per-unit data that counts alone cannot combine, on the device
        self._units: dict[int, dict[str, tuple[torch.Tensor, ...]]] = {}

    def keep_dead_units(self, slot: int, layer: str, dead: torch.Tensor) -> None:
        """Keep a layer's per-unit dead mask (bool, ``(units,)``) of the recorded step in `slot`."""
        self._units.setdefault(slot, {})[layer] = (dead,)

    def keep_unit_moments(self, slot: int, layer: str, count: float, mean: Any, variance: Any) -> None:
        """Keep a BatchNorm layer's examples per unit and per-unit mean and variance of its input."""
        self._units.setdefault(slot, {})[layer] = (
            torch.as_tensor(float(count)),
            *map(torch.as_tensor, (mean, variance)),
        )

    def discard(self) -> None:
        """Forget the per-unit data kept since the last reduction."""
        self._units = {}

    def _process_group(self) -> Any:
        if self._group is None:
            backend = torch.distributed.get_backend()
            # a gloo group of its own: objects travel on the host, apart from the training's NCCL traffic
            self._group = (
                torch.distributed.group.WORLD if backend == "gloo" else torch.distributed.new_group(backend="gloo")
            )
        return self._group

    def reduce(self, drained: Drained, rows: list[RowInfo]) -> Drained | None:
        """Combine every rank's drained statistics on rank 0: return them there, None elsewhere."""
        host, steps, present = drained
        units = {
            slot: {layer: tuple(t.detach().cpu().numpy() for t in parts) for layer, parts in layers.items()}
            for slot, layers in self._units.items()
        }
        self._units = {}
        mine = (host, steps, present, [r.layer for r in rows], units)
        gathered: list[Any] | None = [None] * self.world if self.rank == 0 else None
        torch.distributed.gather_object(mine, gathered, dst=0, group=self._process_group())
        if gathered is None:
            return None
        return self._combine(gathered, rows), steps, present

    def reduce_histograms(self, histograms: pd.DataFrame) -> pd.DataFrame | None:
        """Sum every rank's histogram counts on rank 0 (the bins are fixed, so counts of the shards
        add up to those of the whole batch): return them there, None elsewhere."""
        gathered: list[Any] | None = [None] * self.world if self.rank == 0 else None
        torch.distributed.gather_object(histograms, gathered, dst=0, group=self._process_group())
        if gathered is None:
            return None
        keys = ["step", "layer", "quantity", "bin_left", "bin_right"]
        counts = pd.concat(gathered, ignore_index=True).groupby(keys, sort=False)["count"].sum()
        total = histograms[keys].merge(counts.reset_index(), on=keys, how="left")
        return total

    def _combine(self, gathered: list[Any], rows: list[RowInfo]) -> np.ndarray:
        host, steps = gathered[0][0], gathered[0][1]
        index = {row.layer: row.index for row in rows}
        aligned = np.full((self.world, *host.shape), np.nan, dtype=np.float64)
        for r, (values, their_steps, _, layers, _) in enumerate(gathered):
            if their_steps != steps:
                raise ProbeError(
                    f"rank {r} recorded steps {their_steps} where rank 0 recorded {steps}: "
                    "give every rank's probe the same schedule and call probe.step() on every rank"
                )
            mine = [(i, index[layer]) for i, layer in enumerate(layers) if layer in index and i < values.shape[1]]
            if mine:
                theirs, ours = map(list, zip(*mine))
                aligned[r][:, ours] = values[:, theirs]
        out = self._columns_combined(aligned)
        self._per_unit(out, gathered, steps, index)
        return out.astype(host.dtype)

    def _columns_combined(self, v: np.ndarray) -> np.ndarray:
        col = self.layout.positions
        out: np.ndarray = v[0].copy()  # rank 0's, for what is the same on every rank (units, weights, BN parameters)
        with np.errstate(invalid="ignore", divide="ignore"):
            for name in _SUMMED:
                out[..., col[name]] = v[..., col[name]].sum(axis=0)
            n = v[..., col["n"]]
            pivot, centered, norm = (v[..., col[c]] for c in ("pivot", "centered_sum", "centered_norm"))
            common = pivot[0]
            shift = pivot - common  # each rank's pivot relative to the common one
            out[..., col["centered_sum"]] = (centered + n * shift).sum(axis=0)
            out[..., col["centered_norm"]] = np.sqrt(
                np.clip((norm**2 + 2 * shift * centered + n * shift**2).sum(axis=0), 0, None)
            )
            out[..., col["pre_min"]] = v[..., col["pre_min"]].min(axis=0)
            out[..., col["pre_max"]] = v[..., col["pre_max"]].max(axis=0)
            out[..., col["dead_count"]] = v[..., col["dead_count"]].min(axis=0)  # refined per unit below
            for i, q in enumerate(self.layout.percentiles):
                low, high = v[..., col[f"q_low_{i}"]], v[..., col[f"q_high_{i}"]]
                position = q / 100.0 * (v[..., col["n_sample"]] - 1)
                value = (low + (high - low) * (position - np.floor(position))).mean(axis=0)
                out[..., col[f"q_low_{i}"]] = out[..., col[f"q_high_{i}"]] = value
            out[..., col["grad_sum"]] = v[..., col["grad_sum"]].sum(axis=0) / self.world
            out[..., col["grad_norm"]] = np.sqrt((v[..., col["grad_norm"]] ** 2).sum(axis=0)) / self.world
        return out

    def _per_unit(self, out: np.ndarray, gathered: list[Any], steps: list[int], index: dict[str, int]) -> None:
        col = self.layout.positions
        for slot in range(len(steps)):
            layers = set(gathered[0][4].get(slot, {}))
            for layer in layers:
                parts = [g[4].get(slot, {}).get(layer) for g in gathered]
                if any(p is None for p in parts) or layer not in index:
                    continue
                row = index[layer]
                if len(parts[0]) == 1:  # dead-unit masks: dead on every rank's shard
                    out[slot, row, col["dead_count"]] = float(np.logical_and.reduce([p[0] for p in parts]).sum())
                else:
                    out[slot, row, col["bn_input_mean"]], out[slot, row, col["bn_input_var"]] = _pooled(parts)


def _pooled(parts: list[tuple[np.ndarray, ...]]) -> tuple[float, float]:
    """Mean over units of the pooled per-unit mean and (biased) variance of several shards."""
    counts = np.array([float(p[0]) for p in parts])
    means = np.stack([np.asarray(p[1], dtype=np.float64) for p in parts])  # (ranks, units)
    variances = np.stack([np.asarray(p[2], dtype=np.float64) for p in parts])
    total = counts.sum()
    weights = counts[:, None] / total
    mean = (weights * means).sum(axis=0)
    variance = np.clip((weights * (variances + means**2)).sum(axis=0) - mean**2, 0.0, None)
    return float(mean.mean()), float(variance.mean())
