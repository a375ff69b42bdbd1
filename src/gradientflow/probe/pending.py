"""Recorded steps' pre-activations waiting for their statistics.

For a small network the Python around each statistics call costs more than its arithmetic, so
the probe computes the activation statistics of up to `DEFER_STEPS` recorded steps in one call
per group of same-shaped layers. The tensors waiting are bounded (`DEFER_BYTES`), and a capture
that someone else may overwrite (a leaf such as a reused input buffer) is computed at once.

On the CPU with the C library, the C passes of a batch of small layers run on one background
thread while training goes on (they release the GIL). That helps where a core is left idle:
with one torch thread on the 2-core development machine it took about 60 us a step off the
small MLP's overhead (one pair of measurements); with two torch threads, whose OpenMP workers
hold the second core, it made no difference. At most one batch is in flight; the next one waits for it, so memory stays bounded.
Large layers are computed at once on the calling thread, with all of PyTorch's threads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from . import native
from .activations import SaturationRule
from .stats import RAW_GRADIENT, GradientJob, PreActivationJob, raw_columns

__all__ = ["PendingActivations", "Write", "DEFER_STEPS", "DEFER_BYTES", "STACK_LIMIT"]

DEFER_STEPS = 16
DEFER_BYTES = 8 << 20
STACK_LIMIT = 1 << 16  # elements per layer above which stacking costs more memory traffic than it saves

#: (slots, keys, raw columns, values ``(len(keys), len(columns))``): row i is ``keys[i]`` in ``slots[i]``.
Write = tuple[list[int], list[str], tuple[str, ...], torch.Tensor]
_Entry = tuple[int, str, torch.Tensor, torch.Tensor | None, SaturationRule]


class PendingActivations:
    """(slot, key, pre-activation, gradient, rule) of recorded steps whose statistics are not computed yet."""

    def __init__(
        self, percentiles: Sequence[float], max_samples: int, unit_dim: int = 1, background: bool = True
    ) -> None:
        self.percentiles = tuple(percentiles)
        self.max_samples = max_samples
        self.unit_dim = unit_dim
        self.background = background
        self._waiting: list[_Entry] = []
        self._bytes = 0
        self._steps = 0
        self._urgent = False
        self._worker: ThreadPoolExecutor | None = None
        self._in_flight: tuple[Future[None], _Batch] | None = None

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

    def results(self, wait: bool = False) -> list[Write]:
        """Start computing the queue and return the writes that are ready.

        A batch of small CPU layers has its C passes run on the background thread (a leaf that
        someone may overwrite never waits: it is computed now); anything else is computed now.
        With `wait`, every write of everything queued so far is returned, the background batch
        included. The Python of a batch runs here, before and after: a background thread that
        needed the GIL would stall the training thread whenever both run Python.
        """
        entries, urgent = self._take()
        ready = self._collect()  # the batch in flight first: a native plan serves one batch at a time
        if entries and self._may_defer(entries) and not urgent:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradientflow-probe")
            batch = _Batch(entries, self.percentiles, self.max_samples, self.unit_dim, threads=1)
            self._in_flight = (self._worker.submit(batch.run), batch)
        elif entries:
            batch = _Batch(entries, self.percentiles, self.max_samples, self.unit_dim, threads=None)
            batch.run()
            ready += batch.writes()
        if wait:
            ready += self._collect()
        return ready

    def close(self) -> list[Write]:
        """Compute everything still queued or in flight, stop the background thread, return the writes."""
        ready = self.results(wait=True)
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        return ready

    def _take(self) -> tuple[list[_Entry], bool]:
        entries, urgent = self._waiting, self._urgent
        self._waiting, self._bytes, self._steps, self._urgent = [], 0, 0, False
        return entries, urgent

    def _collect(self) -> list[Write]:
        if self._in_flight is None:
            return []
        (future, batch), self._in_flight = self._in_flight, None
        future.result()  # re-raises what the background thread raised
        return batch.writes()

    def _may_defer(self, entries: list[_Entry]) -> bool:
        return (
            self.background
            and native.library() is not None
            and all(x.is_cpu and x.numel() <= STACK_LIMIT and (g is None or g.is_cpu) for _, _, x, g, _ in entries)
        )


class _Batch:
    """The queued layers grouped by shape, each group's statistics as C jobs (see stats.PreActivationJob):
    made here, `run` anywhere, `writes` here."""

    def __init__(
        self,
        entries: list[_Entry],
        percentiles: tuple[float, ...],
        max_samples: int,
        unit_dim: int,
        threads: int | None,
    ) -> None:
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
        self.columns = raw_columns(percentiles)
        self.groups: list[tuple[list[int], list[str], PreActivationJob, GradientJob | None]] = []
        for (_, _, rule, has_gradient, _), members in groups.items():
            activations = PreActivationJob(
                [x for _, _, x, _ in members], rule, percentiles, max_samples, unit_dim, threads
            )
            gradients = GradientJob([g for _, _, _, g in members], threads) if has_gradient else None  # type: ignore[misc]
            self.groups.append(
                ([slot for slot, _, _, _ in members], [key for _, key, _, _ in members], activations, gradients)
            )

    def run(self) -> None:
        """Make every C call of the batch (and nothing else: see `PendingActivations.results`)."""
        for _, _, activations, gradients in self.groups:
            activations.run()
            if gradients is not None:
                gradients.run()

    def writes(self) -> list[Write]:
        """Return one write per group, after `run`."""
        out: list[Write] = []
        for slots, keys, activations, gradients in self.groups:
            if gradients is None:
                out.append((slots, keys, self.columns, activations.table()))
            else:
                out.append(
                    (
                        slots,
                        keys,
                        self.columns + RAW_GRADIENT,
                        torch.cat((activations.table(), gradients.table()), dim=1),
                    )
                )
        return out
