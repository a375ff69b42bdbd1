"""Fixed-bin histograms of pre-activations and of log10 |gradient|, per activation row.

Bins are fixed (not fitted to the data) so histograms of different steps and runs can be
compared and stacked. Values outside the range are counted in the outermost bins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .buffer import RowInfo

__all__ = ["HistogramRecorder", "PRE_ACTIVATION_RANGE", "LOG10_GRADIENT_RANGE"]

PRE_ACTIVATION_RANGE: tuple[float, float] = (-10.0, 10.0)  # sigmoid/tanh saturate well inside this
LOG10_GRADIENT_RANGE: tuple[float, float] = (-12.0, 2.0)  # from float32's vanishing floor to explosion
_QUANTITIES = (("pre_activation", PRE_ACTIVATION_RANGE), ("log10_abs_grad", LOG10_GRADIENT_RANGE))


class HistogramRecorder:
    """Histogram counts kept on the device: ``(slots, rows, 2 quantities, bins)``."""

    def __init__(self, bins: int, slots: int, device: torch.device) -> None:
        self.bins, self.slots, self.device = bins, slots, device
        self._capacity = 8
        self.counts = torch.zeros((slots, self._capacity, 2, bins), device=device)
        self.steps: list[int] = []
        self.present: list[set[int]] = []

    @property
    def used(self) -> int:
        """Return the number of recorded, unflushed steps."""
        return len(self.steps)

    @property
    def full(self) -> bool:
        """Return True when every slot is used."""
        return len(self.steps) >= self.slots

    def ensure_rows(self, rows: int) -> None:
        """Grow the row capacity so that `rows` rows fit."""
        if rows <= self._capacity:
            return
        capacity = max(rows, 2 * self._capacity)
        grown = torch.zeros((self.slots, capacity, 2, self.bins), device=self.device)
        grown[:, : self._capacity] = self.counts
        self.counts, self._capacity = grown, capacity

    def to(self, device: torch.device) -> None:
        """Move the counts (and what they hold) to `device`, as `StatsBuffer.to`."""
        self.counts = self.counts.to(device)
        self.device = self.counts.device

    def _histogram(self, values: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
        low, high = value_range
        width = (high - low) / self.bins
        clamped = values.float().flatten().nan_to_num(nan=low).clamp(low, high - width / 2)
        return torch.histc(clamped, bins=self.bins, min=low, max=high)

    def record(
        self,
        step: int,
        pre: dict[str, list[torch.Tensor]],
        grads: dict[str, list[torch.Tensor | None]],
        rows: dict[str, RowInfo],
        grad_scale: torch.Tensor | float | None = None,
    ) -> None:
        """Add the histograms of one recorded step; gradients are divided by `grad_scale` (the loss
        scale of mixed precision as a 0-d tensor, and/or DDP's world size) before they are binned."""
        slot = len(self.steps)
        self.steps.append(step)
        present: set[int] = set()
        for key, tensors in pre.items():
            row = rows[key].index
            present.add(row)
            self.counts[slot, row, 0] = self._histogram(torch.cat([t.flatten() for t in tensors]), PRE_ACTIVATION_RANGE)
            gradients = [g for g in grads.get(key, []) if g is not None]
            if gradients:
                magnitude = torch.cat([g.flatten() for g in gradients]).float().abs()
                if grad_scale is not None:
                    divisor = grad_scale.to(magnitude.device) if isinstance(grad_scale, torch.Tensor) else grad_scale
                    magnitude = magnitude / divisor
                magnitude = magnitude.clamp_min(1e-30).log10()
                self.counts[slot, row, 1] = self._histogram(magnitude, LOG10_GRADIENT_RANGE)
        self.present.append(present)

    def drain(self, rows: list[RowInfo]) -> pd.DataFrame:
        """Copy the counts to the host, reset them, and return them as a long table."""
        host = self.counts[: self.used].cpu().numpy().copy()
        self.counts[: self.used].zero_()
        records: dict[str, list[object]] = {
            "step": [],
            "layer": [],
            "quantity": [],
            "bin_left": [],
            "bin_right": [],
            "count": [],
        }
        for slot, (step, present) in enumerate(zip(self.steps, self.present)):
            for row in sorted(present):
                for q, (quantity, (low, high)) in enumerate(_QUANTITIES):
                    edges = np.linspace(low, high, self.bins + 1)
                    records["step"].extend([step] * self.bins)
                    records["layer"].extend([rows[row].layer] * self.bins)
                    records["quantity"].extend([quantity] * self.bins)
                    records["bin_left"].extend(edges[:-1].tolist())
                    records["bin_right"].extend(edges[1:].tolist())
                    records["count"].extend(host[slot, row, q].tolist())
        self.steps, self.present = [], []
        return pd.DataFrame(records)
