"""Recorded steps' pre-activations waiting for their statistics.

For a small network the Python around each statistics call costs more than its arithmetic, so
the probe computes the activation statistics of up to `DEFER_STEPS` recorded steps in one call
per group of same-shaped layers (on the 784-100-100-100-10 MLP recorded every step, computing
each step at its end instead measured 2.37x against 1.86x: benchmarks/probe_optimizations.py).
The tensors waiting are bounded (`DEFER_BYTES`), and a capture that someone else may overwrite
(a leaf such as a reused input buffer) is computed at once.

(A background thread for the C passes of small layers was measured too and removed: 1.86x with
it, 1.88x without, on the same MLP; with two torch threads on two cores it had no core to use.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch

from . import native
from .activations import SaturationRule
from .stats import RAW_GRADIENT, raw_columns, raw_gradient_stats_of, raw_pre_activation_stats_of

__all__ = ["PendingActivations", "Write", "DEFER_STEPS", "DEFER_BYTES", "STACK_LIMIT"]

DEFER_STEPS = 16
DEFER_BYTES = 8 << 20
STACK_LIMIT = 1 << 16  # elements per layer above which stacking costs more memory traffic than it saves

#: (slots, keys, raw columns, values ``(len(keys), len(columns))``): row i is ``keys[i]`` in ``slots[i]``.
Write = tuple[list[int], list[str], tuple[str, ...], torch.Tensor]
_Entry = tuple[int, str, torch.Tensor, torch.Tensor | None, SaturationRule]


class PendingActivations:
    """(slot, key, pre-activation, gradient, rule) of recorded steps whose statistics are not computed yet."""

    def __init__(self, percentiles: Sequence[float], max_samples: int, unit_dim: int = 1) -> None:
        self.percentiles = tuple(percentiles)
        self.max_samples = max_samples
        self.unit_dim = unit_dim
        self._waiting: list[_Entry] = []
        self._bytes = 0
        self._steps = 0
        self._urgent = False

    def add(
        self, slot: int, key: str, x: torch.Tensor, g: torch.Tensor | None, rule: SaturationRule, owned: bool
    ) -> None:
        """Queue one layer of one recorded step; `owned`: nobody else writes to `x` (else compute soon)."""
        self._waiting.append((slot, key, x, g, rule))
        self._bytes += x.numel() * x.element_size() * (1 if g is None else 2)
        self._urgent = self._urgent or not owned

    def end_step(self) -> bool:
        """Mark the end of one recorded step; return True when the queue should be computed now."""
        self._steps += 1
        return self._urgent or self._steps >= DEFER_STEPS or self._bytes >= DEFER_BYTES

    def results(self) -> list[Write]:
        """Compute everything queued; return one write per group of same-shaped layers."""
        entries = self._waiting
        self._waiting, self._bytes, self._steps, self._urgent = [], 0, 0, False
        return _compute(entries, self.percentiles, self.max_samples, self.unit_dim) if entries else []


def _compute(entries: list[_Entry], percentiles: tuple[float, ...], max_samples: int, unit_dim: int) -> list[Write]:
    """Group the queued layers by shape, dtype and rule; return one write per group, each computed
    by one statistics call (and one for its gradients)."""
    groups: dict[tuple[Any, ...], list[tuple[int, str, torch.Tensor, torch.Tensor | None]]] = defaultdict(list)
    in_place = native.library() is not None  # the C path reads a group's layers where they are
    for slot, key, x, g, rule in entries:
        # the torch path stacks a group: large layers are not copied into a stack there
        alone = (
            (slot, key)
            if x.numel() > STACK_LIMIT and not (in_place and x.is_cpu and x.dtype == torch.float32)
            else None
        )
        groups[(tuple(x.shape), x.dtype, rule, g is not None, alone)].append((slot, key, x, g))
    columns = raw_columns(percentiles)
    out: list[Write] = []
    for (_, _, rule, has_gradient, _), members in groups.items():
        slots, keys = [slot for slot, _, _, _ in members], [key for _, key, _, _ in members]
        table = raw_pre_activation_stats_of([x for _, _, x, _ in members], rule, percentiles, max_samples, unit_dim)
        if has_gradient:
            gradients = raw_gradient_stats_of([g for _, _, _, g in members])  # type: ignore[misc]
            out.append((slots, keys, columns + RAW_GRADIENT, torch.cat((table, gradients), dim=1)))
        else:
            out.append((slots, keys, columns, table))
    return out
