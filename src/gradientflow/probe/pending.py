"""Recorded steps' pre-activations waiting for their statistics.

For a small network the Python around each statistics call costs more than its arithmetic, so
the probe computes the activation statistics of up to `DEFER_STEPS` recorded steps in one call
per group of same-shaped layers. The tensors waiting are bounded (`DEFER_BYTES`), and a capture
that someone else may overwrite (a leaf such as a reused input buffer) is computed at once.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterator, Sequence

import torch

from .activations import SaturationRule
from .stats import RAW_GRADIENT, raw_columns, raw_gradient_stats_of, raw_pre_activation_stats_of

__all__ = ["PendingActivations", "DEFER_STEPS", "DEFER_BYTES", "STACK_LIMIT"]

DEFER_STEPS = 16
DEFER_BYTES = 8 << 20
STACK_LIMIT = 1 << 16  # elements per layer above which stacking costs more memory traffic than it saves


class PendingActivations:
    """(slot, key, pre-activation, gradient, rule) of recorded steps whose statistics are not computed yet."""

    def __init__(self) -> None:
        self._waiting: list[tuple[int, str, torch.Tensor, torch.Tensor | None, SaturationRule]] = []
        self._bytes = 0
        self._steps = 0
        self._urgent = False

    def add(self, slot: int, key: str, x: torch.Tensor, g: torch.Tensor | None, rule: SaturationRule, owned: bool) -> None:
        """Queue one layer of one recorded step; `owned`: nobody else writes to `x` (else compute soon)."""
        self._waiting.append((slot, key, x, g, rule))
        self._bytes += x.numel() * x.element_size() * (1 if g is None else 2)
        self._urgent = self._urgent or not owned

    def end_step(self) -> bool:
        """Mark the end of one recorded step; return True when the queue should be computed now."""
        self._steps += 1
        return self._urgent or self._steps >= DEFER_STEPS or self._bytes >= DEFER_BYTES

    def compute(self, percentiles: Sequence[float], max_samples: int) -> Iterator[tuple[int, list[str], tuple[str, ...], torch.Tensor]]:
        """Empty the queue; yield (slot, keys, raw columns, values ``(len(keys), len(columns))``) to write."""
        groups: dict[tuple[Any, ...], list[tuple[int, str, torch.Tensor, torch.Tensor | None]]] = defaultdict(list)
        for slot, key, x, g, rule in self._waiting:
            # large layers are not copied into a stack (the torch path stacks a group)
            alone = (slot, key) if x.numel() > STACK_LIMIT else None
            groups[(tuple(x.shape), x.dtype, rule, g is not None, alone)].append((slot, key, x, g))
        self._waiting, self._bytes, self._steps, self._urgent = [], 0, 0, False
        pre_columns = raw_columns(percentiles)
        for (_, _, rule, has_gradient, _), members in groups.items():
            values = raw_pre_activation_stats_of([x for _, _, x, _ in members], rule, percentiles, max_samples)
            columns: tuple[str, ...] = pre_columns
            if has_gradient:
                values = torch.cat((values, raw_gradient_stats_of([g for _, _, _, g in members])), dim=1)  # type: ignore[misc]
                columns = pre_columns + RAW_GRADIENT
            by_slot: dict[int, list[int]] = defaultdict(list)
            for i, (slot, _, _, _) in enumerate(members):
                by_slot[slot].append(i)
            for slot, rows in by_slot.items():
                yield slot, [members[i][1] for i in rows], columns, values if len(rows) == len(members) else values[rows]
