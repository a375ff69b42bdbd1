"""Weight statistics over one optimizer step: norms, gradient norms and the update/weight ratio.

The update ratio needs the weights before the step. Copying every weight each recorded step
would cost as much memory traffic as the optimizer itself for wide layers, so weights larger
than `sample_limit` elements keep only a fixed random subset of their entries; the ratio of
norms is estimated on that subset (the norms themselves are always exact).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["WeightTracker", "UPDATE_SAMPLE_LIMIT"]

#: Weights up to this many elements get an exact update ratio (784 x 100 and 1000 x 100 do).
UPDATE_SAMPLE_LIMIT = 131_072


def _positions(numel: int, limit: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(numel)
    return torch.randperm(numel, generator=generator)[:limit].sort().values.to(device)


class WeightTracker:
    """Remembers each tracked module's weight before a step and measures the step afterwards."""

    def __init__(self, modules: list[nn.Module], sample_limit: int = UPDATE_SAMPLE_LIMIT) -> None:
        self.modules = modules
        self.sample_limit = sample_limit
        self._index = {m: i for i, m in enumerate(modules)}
        self._positions: list[torch.Tensor | None] = [
            _positions(m.weight.numel(), sample_limit, m.weight.device) if m.weight.numel() > sample_limit else None for m in modules
        ]
        self._small = [i for i, p in enumerate(self._positions) if p is None]
        self._before: list[torch.Tensor] | None = None
        self._before_norms: list[torch.Tensor] | None = None

    def _views(self) -> list[torch.Tensor]:
        views = []
        for module, positions in zip(self.modules, self._positions):
            flat = module.weight.detach().reshape(-1)
            views.append(flat if positions is None else flat.index_select(0, positions))
        return views

    def snapshot(self) -> None:
        """Remember the weights as they are now (call before the forward pass of a recorded step)."""
        if not self.modules:
            return
        weights = [m.weight.detach() for m in self.modules]
        self._before_norms = torch._foreach_norm(weights)
        if self._before is None:
            self._before = [v.clone() for v in self._views()]
            return
        small = [self._before[i] for i in self._small]
        if small:
            torch._foreach_copy_(small, [weights[i].reshape(-1) for i in self._small])
        for i, positions in enumerate(self._positions):
            if positions is not None:
                torch.index_select(weights[i].reshape(-1), 0, positions, out=self._before[i])

    def forget(self) -> None:
        """Drop the snapshot (the next step's statistics then have no update ratio)."""
        self._before_norms = None

    def measure(self, modules: list[nn.Module]) -> torch.Tensor:
        """Return ``(len(modules), 4)``: weight norm before the step, weight-gradient norm, and the
        norms of the update and of the weights before it over the tracked entries (their ratio is
        the update ratio). Without a snapshot: the current weights' norm, then NaN for the update.
        """
        grads = [m.weight.grad for m in modules]
        if all(g is not None for g in grads):
            grad_norms = torch._foreach_norm(grads)
        else:
            grad_norms = [torch.linalg.vector_norm(g) if g is not None else torch.tensor(math.nan) for g in grads]
        if self._before_norms is None or self._before is None:
            norms = torch._foreach_norm([m.weight.detach() for m in modules])
            nan = torch.full((len(modules),), math.nan)
            return torch.stack((torch.stack(norms), torch.stack(grad_norms), nan, nan), dim=1)
        chosen = [self._index[m] for m in modules]
        views = self._views()
        after = [views[i] for i in chosen]
        before = [self._before[i] for i in chosen]
        change = torch._foreach_norm(torch._foreach_sub(after, before))
        tracked = torch._foreach_norm(before)
        norms = [self._before_norms[i] for i in chosen]
        return torch.stack([*norms, *grad_norms, *change, *tracked]).reshape(4, len(modules)).T
