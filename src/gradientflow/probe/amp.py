"""Mixed precision: the probe's gradients as the model's, not as the loss scaler's.

Under ``torch.amp.GradScaler`` the backward pass runs on ``loss * scale``, so every gradient the
probe captures during it is `scale` times the model's. The probe keeps the scale in effect for
each recorded step and divides the gradient columns by it at the flush (a sum and a norm are
linear in the scale, so this is exact up to rounding and costs nothing per step). Weight gradients
need nothing: ``scaler.step(optimizer)`` unscales them in place before the probe reads them.

A step whose gradients held inf/NaN is skipped by the scaler (the optimizer does not step and the
scale backs off). Its rows would read as an explosion, so they are left out of the table and its
index is listed in `Probe.skipped_steps` instead.

Which scale was in effect is read without a host sync: the scale tensor is copied (on its device)
when a recorded step begins, and compared with the scale when the step ends. Two orders work:
``scaler.step(opt); scaler.update(); probe.step()`` (the scaler backed off: the scale fell below
the one at the step's start) and ``scaler.step(opt); probe.step(); scaler.update()`` (the scaler's
own found-inf flags of the step).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ProbeError

__all__ = ["GradScaleTracker", "check_grad_scaler"]


def check_grad_scaler(scaler: object) -> torch.amp.GradScaler | None:
    """Return `scaler` when it is an enabled ``torch.amp.GradScaler`` (None for None or a disabled
    one); raise ProbeError for anything else."""
    if scaler is None:
        return None
    if not isinstance(scaler, torch.amp.GradScaler):
        raise ProbeError(
            f"grad_scaler must be the torch.amp.GradScaler that scales the loss, got {type(scaler).__name__}; "
            "pass the same object you call scaler.scale(loss).backward() on"
        )
    return scaler if scaler.is_enabled() else None


class GradScaleTracker:
    """The loss scale and whether the scaler skipped, per recorded step, kept on the scale's device.

    Call `begin` when a recorded step begins (before its first forward), `record` at its end (in
    ``probe.step()``) and `apply` on the drained statistics at each flush.
    """

    def __init__(self, scaler: torch.amp.GradScaler, slots: int) -> None:
        self.scaler = scaler
        self.slots = slots
        self._before: torch.Tensor | float | None = None  # the scale when the recorded step began
        self._table: torch.Tensor | None = None  # (slots, 2): scale in effect, skipped (0/1)

    def begin(self) -> None:
        """Remember the scale now: the one the coming backward passes multiply the loss by."""
        scale = self.scaler._scale
        # before the first scaler.scale() the scale tensor does not exist yet: it will be init_scale
        self._before = scale.detach().clone() if scale is not None else float(self.scaler._init_scale)

    def _in_effect(self) -> tuple[torch.Tensor, torch.Tensor]:
        current = self.scaler._scale
        before = self._before if self._before is not None else float(self.scaler._init_scale)
        if current is None:  # the scaler never scaled a loss: nothing was scaled
            one = torch.ones(())
            return (one if isinstance(before, float) else before), torch.zeros(())
        if isinstance(before, float):
            before = torch.full((), before, device=current.device)
        found = [
            flag
            for state in self.scaler._per_optimizer_states.values()
            for flag in state.get("found_inf_per_device", {}).values()
        ]
        if found:  # scaler.step() ran and scaler.update() has not: its flags say whether it skipped
            inf = torch.stack([f.to(current.device, torch.float32) for f in found]).sum()
            return current.detach().clone(), (inf > 0).float()
        return before, (current < before).float()  # the scaler backs off only on inf/NaN

    def record(self, slot: int) -> torch.Tensor:
        """Store the scale in effect for the recorded step in `slot` and whether it was skipped;
        return that scale (a 0-d tensor on the scale's device, e.g. to unscale a histogram)."""
        scale, skipped = self._in_effect()
        if self._table is None or self._table.device != scale.device:
            self._table = torch.full((self.slots, 2), math.nan, device=scale.device)
        self._table[slot, 0] = scale
        self._table[slot, 1] = skipped
        self._before = None
        return scale

    def apply(self, host: np.ndarray, steps: list[int], present: list[set[int]], columns: list[int]) -> list[int]:
        """Unscale the drained statistics in place: divide `columns` of each slot by its scale; empty
        `present` for the slots the scaler skipped. Return the skipped steps' indices."""
        used = len(steps)
        if used == 0 or self._table is None:
            return []
        table = self._table[:used].cpu().numpy().astype(np.float64)  # the flush's one extra copy
        host[:, :, columns] = host[:, :, columns] / table[:, 0, None, None]
        skipped = [steps[slot] for slot in range(used) if table[slot, 1] > 0]
        for slot in range(used):
            if table[slot, 1] > 0:
                present[slot] = set()
        return skipped
