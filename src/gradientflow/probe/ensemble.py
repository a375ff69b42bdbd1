"""The probe of a vectorized ensemble: each member's statistics as its own rows, as `Probe` gives them.

`stats.py` already computes statistics for layers stacked along a leading dimension; stacking the
members of an ensemble along that dimension is the same operation, so all members' (and all
same-shaped layers') statistics come from one call. Each member's rows are then derived and
published exactly as a `Probe` on that member alone would publish them (same columns, same
layer names and order), so a member stored from an ensemble reads like a run trained alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import pandas as pd
import torch

from ..errors import ProbeError
from ..records import DEFAULT_PERCENTILES
from .activations import SaturationRule
from .buffer import RowInfo, frame_from_drain
from .layout import BN_RAW, WEIGHT_RAW, RowLayout
from .schedule import Schedule, as_schedule
from .stats import (
    RAW_GRADIENT,
    batch_moments_per_unit,
    raw_columns,
    raw_gradient_stats,
    raw_pre_activation_stats,
)
from .weights import UPDATE_SAMPLE_LIMIT, update_positions  # the same entries a lone run's WeightTracker samples

__all__ = ["EnsembleProbe", "EnsembleWeightTracker", "norm_raw"]

Sink = Callable[[pd.DataFrame, "pd.DataFrame | None"], None]


def _member_norms(tensor: torch.Tensor) -> torch.Tensor:
    """L2 norm of each member's slice of ``(members, ...)``: ``(members,)``."""
    # annotated: torch.linalg's functions are typed Any
    norms: torch.Tensor = torch.linalg.vector_norm(tensor.reshape(tensor.shape[0], -1), dim=1)
    return norms


class EnsembleWeightTracker:
    """Per-member weight norms, gradient norms and update ratios of stacked weights ``(members, ...)``.

    Each weight is given with `layouts`: None when a member's slice is laid out as the lone
    module's weight, or ``(in, out)`` for a Linear weight stored transposed; the update ratio of
    a weight above `UPDATE_SAMPLE_LIMIT` entries is then measured on the same entries a lone
    run's `WeightTracker` samples.
    """

    def __init__(
        self, layouts: Sequence[tuple[int, int] | None], sizes: Sequence[int], sample_limit: int = UPDATE_SAMPLE_LIMIT
    ) -> None:
        self._positions: list[torch.Tensor | None] = []
        for layout, size in zip(layouts, sizes):
            positions = update_positions(size, sample_limit)
            if positions is None:
                self._positions.append(None)
                continue
            if layout is not None:  # position in (out, in) order -> position in the stored (in, out) order
                fan_in, fan_out = layout
                positions = (positions % fan_in) * fan_out + positions // fan_in
            self._positions.append(positions)
        self._before: list[torch.Tensor] | None = None
        self._before_norms: list[torch.Tensor] | None = None

    def _tracked(self, weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        views = []
        for weight, positions in zip(weights, self._positions):
            flat = weight.detach().reshape(weight.shape[0], -1)  # (members, entries)
            views.append(flat if positions is None else flat.index_select(1, positions.to(flat.device)))
        return views

    def snapshot(self, weights: Sequence[torch.Tensor]) -> None:
        """Remember the weights as they are now (before the forward pass of a recorded step)."""
        self._before_norms = [_member_norms(w.detach()) for w in weights]
        self._before = [v.clone() for v in self._tracked(weights)]

    def keep(self, index: torch.Tensor) -> None:
        """Keep the snapshot of the members at positions `index` only."""
        if self._before is not None and self._before_norms is not None:
            self._before = [b.index_select(0, index) for b in self._before]
            self._before_norms = [n.index_select(0, index) for n in self._before_norms]

    def measure(self, weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        """Return per weight a ``(members, 4)`` tensor of layout.WEIGHT_RAW (NaN for the update without a snapshot)."""
        out = []
        after = self._tracked(weights)
        for i, (weight, grad) in enumerate(zip(weights, grads)):
            members = weight.shape[0]
            grad_norm = _member_norms(grad) if grad is not None else weight.new_full((members,), math.nan)
            if self._before is None or self._before_norms is None:
                nan = weight.new_full((members,), math.nan)
                out.append(torch.stack((_member_norms(weight.detach()), grad_norm, nan, nan), dim=1))
                continue
            change = torch.linalg.vector_norm(after[i] - self._before[i], dim=1)
            tracked = torch.linalg.vector_norm(self._before[i], dim=1)
            out.append(torch.stack((self._before_norms[i], grad_norm, change, tracked), dim=1))
        self._before = self._before_norms = None
        return out


class EnsembleProbe:
    """Collects per-member statistics of recorded steps and hands each member's rows to its sink.

    `rows` are the rows one member's `Probe` would publish, in forward order; `sinks[i]` receives
    member i's flushed chunks, as `Probe(sink=...)` would. Call `record` once per recorded step
    (after the optimizer step), `keep` when members leave, `close` at the end.
    """

    def __init__(
        self,
        rows: Sequence[RowInfo],
        sinks: Sequence[Sink],
        *,
        every: int | Schedule = 1,
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        flush_every: int = 100,
        max_percentile_samples: int = 4096,
    ) -> None:
        if flush_every < 1:
            raise ProbeError(f"flush_every must be >= 1, got {flush_every!r}")
        self.rows = list(rows)
        self.sinks = list(sinks)
        self.schedule = as_schedule(every)
        self.percentiles = tuple(float(q) for q in percentiles)
        self.flush_every = flush_every
        self.max_percentile_samples = max_percentile_samples
        # the layout of a lone Probe with these percentiles: a member's rows read as that probe's
        self.layout = RowLayout(self.percentiles)
        self.columns = self.layout.published
        self.raw_columns = self.layout.raw
        self._row = {row.layer: row.index for row in self.rows}
        self._steps: list[int] = []
        self._values: list[torch.Tensor] = []  # per recorded step: (rows, members, raw columns)

    def records(self, step: int) -> bool:
        """Return True when `step` is one the schedule records."""
        return bool(self.schedule(step))

    def record(
        self,
        step: int,
        activations: Sequence[tuple[str, SaturationRule, torch.Tensor, torch.Tensor | None]],
        weights: Sequence[tuple[str, torch.Tensor]],
        norms: Sequence[tuple[str, torch.Tensor]],
    ) -> None:
        """Compute and keep one step's statistics.

        `activations`: (row name, saturation rule, pre-activation, its gradient or None), tensors
        ``(members, batch, units)``; `weights`: (row name, ``(members, 4)`` of layout.WEIGHT_RAW);
        `norms`: (BatchNorm row name, ``(members, 6)`` of layout.BN_RAW).
        """
        members = len(self.sinks)
        values = torch.full((len(self.rows), members, len(self.raw_columns)), math.nan)
        with torch.no_grad():
            self._record_activations(values, activations)
            for name, raw in weights:
                values[self._row[name], :, self.layout.span(WEIGHT_RAW)] = raw.float().cpu()
            for name, raw in norms:
                values[self._row[name], :, self.layout.span(BN_RAW)] = raw.float().cpu()
        self._steps.append(step)
        self._values.append(values)
        if len(self._steps) >= self.flush_every:
            self.flush()

    def _record_activations(
        self, values: torch.Tensor, activations: Sequence[tuple[str, SaturationRule, torch.Tensor, torch.Tensor | None]]
    ) -> None:
        groups: dict[
            tuple[tuple[int, ...], SaturationRule, bool], list[tuple[str, torch.Tensor, torch.Tensor | None]]
        ] = defaultdict(list)
        for name, rule, x, g in activations:
            groups[(tuple(x.shape), rule, g is not None)].append((name, x, g))
        pre = raw_columns(self.percentiles)
        for (shape, rule, has_grad), group in groups.items():
            members, batch, units = shape
            # layers and members along one leading dimension: one call of the stats functions for all
            x = torch.stack([x for _, x, _ in group]).reshape(
                -1, batch, units, 1
            )  # (layers * members, batch, units, 1)
            raw = raw_pre_activation_stats(x, rule, self.percentiles, self.max_percentile_samples)
            if has_grad:
                # the group's key says every gradient of it is there
                g = torch.stack(cast("list[torch.Tensor]", [g for _, _, g in group])).reshape(
                    -1, batch, units
                )  # (layers * members, batch, units)
                raw = torch.cat((raw, raw_gradient_stats(g)), dim=1)
            raw = raw.reshape(len(group), members, -1).float().cpu()
            rows = [self._row[name] for name, _, _ in group]
            width = len(pre) + (len(RAW_GRADIENT) if has_grad else 0)
            values[rows, :, :width] = raw

    def flush(self) -> None:
        """Hand every member's rows recorded since the last flush to its sink."""
        if not self._steps:
            return
        host = torch.stack(self._values).numpy()  # (steps, rows, members, raw columns)
        steps = self._steps
        self._steps, self._values = [], []
        present = [set(range(len(self.rows))) for _ in steps]
        for member, sink in enumerate(self.sinks):
            frame = frame_from_drain(
                np.ascontiguousarray(host[:, :, member]),
                steps,
                present,
                self.rows,
                self.layout,
            )
            sink(frame, None)

    def keep(self, members: Sequence[int]) -> None:
        """Flush, then keep only the members at positions `members` (in that order)."""
        self.flush()
        self.sinks = [self.sinks[i] for i in members]

    def close(self) -> None:
        """Flush what is recorded."""
        self.flush()


def norm_raw(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor
) -> torch.Tensor:
    """layout.BN_RAW of each member of a BatchNorm layer: ``(members, 6)``.

    `x` is the layer's input ``(members, batch, features)``; the others are ``(members, features)``.
    """
    moments = batch_moments_per_unit(x.detach().unsqueeze(-1))  # (members, 2)
    return torch.cat(
        (
            moments,
            torch.stack(
                (
                    _member_norms(gamma.detach()),
                    _member_norms(beta.detach()),
                    _member_norms(running_mean),
                    running_var.mean(dim=1),
                ),
                dim=1,
            ),
        ),
        dim=1,
    )
