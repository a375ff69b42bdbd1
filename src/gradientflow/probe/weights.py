"""Weight statistics over one optimizer step: norms, gradient norms and the update/weight ratio.

The update ratio needs the weights before the step. Copying every weight each recorded step
would cost as much memory traffic as the optimizer itself for wide layers, so weights larger
than `sample_limit` elements keep only a fixed random subset of their entries; the ratio of
norms is estimated on that subset (the norms themselves are always exact).
"""

from __future__ import annotations

import functools
import math
from typing import cast

import numpy as np
import torch
from torch import nn

from . import native

__all__ = ["WeightTracker", "UPDATE_SAMPLE_LIMIT", "UPDATE_SAMPLE_SIZE", "update_positions"]

#: Weights up to this many elements get an exact update ratio (784 x 100 and 1000 x 100 do).
UPDATE_SAMPLE_LIMIT = 131_072
#: Larger weights keep this many fixed random entries: the ratio of norms over 16,384 entries is
#: within about 1% of the exact one, and reading them touches a quarter of a 1024 x 1024 weight's
#: cache lines instead of all of them (twice per step: the snapshot and the update).
UPDATE_SAMPLE_SIZE = 16_384


@functools.lru_cache(maxsize=64)
def _positions(numel: int, limit: int, device: torch.device) -> torch.Tensor:
    # cached: a permutation of a million entries takes tens of milliseconds, per weight, per probe
    generator = torch.Generator().manual_seed(numel)
    return torch.randperm(numel, generator=generator)[:limit].sort().values.to(device)


def update_positions(
    numel: int, sample_limit: int = UPDATE_SAMPLE_LIMIT, device: torch.device | None = None
) -> torch.Tensor | None:
    """Return the sorted flat indices whose update a weight of `numel` entries is measured on, or None for all.

    Weights up to `sample_limit` entries: None (exact). Larger ones: a fixed pseudo-random subset of
    ``min(sample_limit, UPDATE_SAMPLE_SIZE)`` entries, the same for every weight of that size.
    """
    if numel <= sample_limit:
        return None
    return _positions(numel, min(sample_limit, UPDATE_SAMPLE_SIZE), device or torch.device("cpu"))


class WeightTracker:
    """Remembers each tracked module's weight before a step and measures the step afterwards."""

    def __init__(self, modules: list[nn.Module], sample_limit: int = UPDATE_SAMPLE_LIMIT) -> None:
        self.modules = modules
        self.sample_limit = sample_limit
        self._index = {m: i for i, m in enumerate(modules)}
        # on each weight's device now; `_views` moves them when the weight has moved since (a model
        # moved after the probe was built, e.g. Probe(model) then model.cuda())
        self._positions: list[torch.Tensor | None] = [
            update_positions(_weight(m).numel(), sample_limit, _weight(m).device) for m in modules
        ]
        self._small = [i for i, p in enumerate(self._positions) if p is None]
        self._before: list[torch.Tensor] | None = None
        self._before_norms: list[torch.Tensor] | None = None
        self._native = _NativeTracker(self) if _native_ready(modules) else None

    def _views(self) -> list[torch.Tensor]:
        views = []
        for i, (module, positions) in enumerate(zip(self.modules, self._positions)):
            flat = cast(torch.Tensor, module.weight).detach().reshape(-1)
            if positions is not None and positions.device != flat.device:
                positions = self._positions[i] = positions.to(flat.device)
            views.append(flat if positions is None else flat.index_select(0, positions))
        return views

    def _snapshot_matches(self, weights: list[torch.Tensor]) -> bool:
        # the kept copies were made for these weights' devices and dtypes (not those before a move)
        assert self._before is not None
        return all(b.device == w.device and b.dtype == w.dtype for b, w in zip(self._before, weights))

    def snapshot(self) -> None:
        """Remember the weights as they are now (call before the forward pass of a recorded step)."""
        if not self.modules:
            return
        if self._native is not None and self._native.snapshot():
            return
        weights = [cast(torch.Tensor, m.weight).detach() for m in self.modules]
        self._before_norms = _norms(weights)
        if self._before is None or not self._snapshot_matches(weights):
            self._before = [v.clone() for v in self._views()]
            return
        small = [self._before[i] for i in self._small]
        if small:
            torch._foreach_copy_(small, [weights[i].reshape(-1) for i in self._small])
        views = None
        for i, positions in enumerate(self._positions):
            if positions is not None:
                if positions.device != weights[i].device:
                    views = views or self._views()  # moves the positions too
                    self._before[i].copy_(views[i])
                    continue
                torch.index_select(weights[i].reshape(-1), 0, positions, out=self._before[i])

    def forget(self) -> None:
        """Drop the snapshot (the next step's statistics then have no update ratio)."""
        self._before_norms = None
        if self._native is not None:
            self._native.fresh = False
            self._native.retained = None

    def measure(self, modules: list[nn.Module], keep_next: bool = False) -> torch.Tensor:
        """Return ``(len(modules), 4)``: weight norm before the step, weight-gradient norm, and the
        norms of the update and of the weights before it over the tracked entries (their ratio is
        the update ratio). Without a snapshot: the current weights' norm, then NaN for the update.

        `keep_next`: the next step is recorded too, so the native path may keep the weights now,
        in the same pass, as that step's snapshot (used unless they change in place before it).
        """
        if self._native is not None and self._native.fresh:
            measured = self._native.measure(tuple(self._index[m] for m in modules), keep_next)
            if measured is not None:
                return measured
        grads = [cast(torch.Tensor, m.weight).grad for m in modules]
        if all(g is not None for g in grads):
            grad_norms = _norms(cast("list[torch.Tensor]", grads))  # all there, as just checked
        else:
            # a frozen weight (requires_grad=False) has no gradient: NaN made on its own device, as a
            # fill (torch.tensor(nan) would be a CPU tensor, and a copy to an accelerator a host sync)
            grad_norms = [
                _norms([g])[0]
                if g is not None
                else torch.full((), math.nan, device=cast(torch.Tensor, m.weight).device)
                for g, m in zip(grads, modules)
            ]
        views = self._views() if self._before_norms is not None and self._before is not None else None
        if views is None or not self._snapshot_matches([cast(torch.Tensor, m.weight) for m in self.modules]):
            # no snapshot, or one of weights since moved to another device or dtype
            norms = _norms([cast(torch.Tensor, m.weight).detach() for m in modules])
            nan = torch.full((len(modules),), math.nan, device=norms[0].device)
            return torch.stack((torch.stack(norms), torch.stack(grad_norms), nan, nan), dim=1)
        # `views` is only built when both are set
        assert self._before is not None and self._before_norms is not None
        chosen = [self._index[m] for m in modules]
        after = [views[i] for i in chosen]
        before = [self._before[i] for i in chosen]
        change = _norms(torch._foreach_sub(after, before))
        tracked = _norms(before)
        norms = [self._before_norms[i] for i in chosen]
        return torch.stack([*norms, *grad_norms, *change, *tracked]).reshape(4, len(modules)).T


def _norms(tensors: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """L2 norm of each tensor, float32 (accumulated in float32 for half or bfloat16 weights)."""
    if all(t.dtype == torch.float32 for t in tensors):
        return list(torch._foreach_norm(tensors))
    low = (torch.float16, torch.bfloat16)
    return [
        torch.linalg.vector_norm(t, dtype=torch.float32) if t.dtype in low else torch.linalg.vector_norm(t).float()
        for t in tensors
    ]


def _native_ready(modules: list[nn.Module]) -> bool:
    return bool(modules) and native.library() is not None and all(_plain_cpu(_weight(m)) for m in modules)


def _plain_cpu(t: torch.Tensor | None) -> bool:
    return t is not None and t.is_cpu and t.dtype == torch.float32 and t.is_contiguous()


def _weight(module: nn.Module) -> torch.Tensor:
    # every tracked module's weight is a tensor, but nn.Module's stubs type any attribute as
    # `Tensor | Module`; the per-step paths cast inline instead, saving this call per weight
    return cast(torch.Tensor, module.weight)


def _weight_of(module: nn.Module) -> torch.Tensor:
    # the parameter dict directly: nn.Module.__getattr__ costs microseconds per call, and this
    # runs for every tracked weight on every recorded step
    weight = module._parameters.get("weight")
    return weight if weight is not None else cast(torch.Tensor, module.weight)  # e.g. a parametrized weight


class _UpdatePlan:
    """Arrays of one subset of the tracked weights for `gf_weight_table`, built once per subset."""

    def __init__(self, tracker: _NativeTracker, chosen: tuple[int, ...]) -> None:
        self.chosen = np.array(chosen, dtype=np.int64)
        self.everything = chosen == tuple(range(len(tracker.modules)))
        self.modules = [tracker.modules[i] for i in chosen]
        self.before = native.pointers([tracker.before[i] for i in chosen])
        self.positions = native.pointers([tracker.positions[i] for i in chosen])
        self.sizes, self.kept = tracker.sizes[self.chosen], tracker.kept[self.chosen]
        self.norms = np.empty(len(chosen))  # the squared norms before the step, for a subset
        self.scratch = np.empty((len(chosen), 3))
        self.table = torch.empty(
            (len(chosen), 4), dtype=torch.float32
        )  # weight norm before, grad norm, change, tracked
        self.addresses = (
            self.sizes.ctypes.data,
            self.kept.ctypes.data,
            self.norms.ctypes.data,
            self.scratch.ctypes.data,
            self.table.data_ptr(),
        )


class _NativeTracker:
    """The same measurements through the C library: one pass per weight for the snapshot (copy and
    norm together) and one for the update (gradient norm, change and tracked norm together).

    The per-step path is two C calls and the Python that feeds them, which for a small network
    costs more than the C passes: every array and address that does not change between steps is
    built once (numpy's ``.ctypes`` attribute alone costs microseconds).
    """

    def __init__(self, tracker: WeightTracker) -> None:
        self.modules = tracker.modules
        self.before = [
            torch.empty(_weight(m).numel() if p is None else len(p), dtype=torch.float32)
            for m, p in zip(tracker.modules, tracker._positions)
        ]
        self.sizes = np.array([_weight(m).numel() for m in tracker.modules], dtype=np.int64)
        self.kept = np.array([len(b) for b in self.before], dtype=np.int64)
        self.positions = [p.cpu().contiguous() if p is not None else None for p in tracker._positions]
        self.norms_squared = np.full(len(self.before), math.nan)
        self._norms_address = self.norms_squared.ctypes.data
        self._snapshot_arguments = (
            native.pointers(self.before),
            self.sizes.ctypes.data,
            native.pointers(self.positions),
            self.kept.ctypes.data,
            len(self.before),
            self._norms_address,
        )
        self._plans: dict[tuple[int, ...], _UpdatePlan] = {}
        self.fresh = False
        # (weight, version) of each weight as the last update pass copied it: a snapshot taken
        # already, valid while every weight is the same tensor at the same in-place version
        self.retained: list[tuple[torch.Tensor, int]] | None = None

    def snapshot(self) -> bool:
        """Copy the weights (or their tracked entries) and their squared norms; False (nothing done)
        when a weight is no longer a contiguous float32 CPU tensor (a model moved later)."""
        weights = [_weight_of(m) for m in self.modules]
        retained, self.retained = self.retained, None
        if retained is not None and all(w is r and w._version == v for w, (r, v) in zip(weights, retained)):
            self.fresh = True
            return True
        if not all(_plain_cpu(w) for w in weights):
            self.fresh = False
            return False
        before, sizes, positions, kept, count, norms = self._snapshot_arguments
        native.library().gf_snapshot(  # type: ignore[union-attr]
            native.pointers(weights), before, sizes, positions, kept, count, norms, torch.get_num_threads()
        )
        self.fresh = True
        return True

    def measure(self, chosen: tuple[int, ...], keep_next: bool = False) -> torch.Tensor | None:
        """Return the `WeightTracker.measure` table of the weights at indices `chosen`, or None when
        a weight is no longer a contiguous float32 CPU tensor. With `keep_next` (and every weight
        chosen) the same pass takes the next step's snapshot."""
        plan = self._plans.get(chosen)
        if plan is None:
            plan = self._plans[chosen] = _UpdatePlan(self, chosen)
        weights = [_weight_of(m) for m in plan.modules]
        grads = [w.grad for w in weights]
        if not all(_plain_cpu(w) for w in weights) or not all(g is None or _plain_cpu(g) for g in grads):
            return None
        sizes, kept, norms, scratch, table = plan.addresses
        keep = keep_next and plan.everything
        if plan.everything:  # the pass that keeps the next snapshot overwrites them in place
            norms = self._norms_address
        else:
            np.take(self.norms_squared, plan.chosen, out=plan.norms)
        native.library().gf_weight_table(  # type: ignore[union-attr]
            native.pointers(weights),
            plan.before,
            native.pointers(grads),
            sizes,
            plan.positions,
            kept,
            len(weights),
            norms,
            int(keep),
            scratch,
            table,
            torch.get_num_threads(),
        )
        self.retained = [(w, w._version) for w in weights] if keep else None
        return plan.table.clone()  # the plan's table is refilled by the next call
