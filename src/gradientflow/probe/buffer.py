"""On-device statistics buffer: one slot per recorded step, copied to the host once per flush.

Keeping the statistics on the tensor's device and copying them in one transfer is what
makes the probe cheap: an ``.item()`` per layer per step would sync the device every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:
    from .layout import RowLayout

__all__ = ["RowInfo", "StatsBuffer"]


@dataclass(frozen=True)
class RowInfo:
    """Identity of one row of the per-layer table (see records.LAYER_ID_COLUMNS)."""

    index: int
    layer: str
    order: int
    kind: str
    module_type: str
    activation: str | None


class StatsBuffer:
    """A ``(slots, rows, columns)`` float32 tensor filled with NaN, plus which rows each slot holds.

    Memory is fixed by `slots` x the number of rows seen so far; it does not grow with steps.
    """

    def __init__(
        self, columns: tuple[str, ...], slots: int, device: torch.device, extra_shape: tuple[int, ...] = ()
    ) -> None:
        self.columns = columns
        self.slots = slots
        self.device = device
        self.extra_shape = extra_shape
        self._capacity = 8
        self.values = torch.full((slots, self._capacity, len(columns), *extra_shape), math.nan, device=device)
        self._host = self._host_view()
        self.steps: list[int] = []
        self.present: list[set[int]] = []
        # (rows, columns) -> index tensors on the device: made once, since a copy of an index from
        # the host to an accelerator on every write would be a host sync per layer per step
        self._device_index: dict[tuple[bytes, bytes], tuple[torch.Tensor, torch.Tensor]] = {}

    def to(self, device: torch.device) -> None:
        """Move the buffer (and what it holds) to `device`: the probe follows a model moved after
        the probe was built, so that statistics are written where they are computed."""
        if torch.device(device) == self.values.device:
            return
        self.values = self.values.to(device)
        self.device = self.values.device
        self._host = self._host_view()
        self._device_index = {}

    @property
    def used(self) -> int:
        """Return how many slots hold a recorded step that has not been flushed."""
        return len(self.steps)

    @property
    def full(self) -> bool:
        """Return True when every slot is used."""
        return len(self.steps) >= self.slots

    def ensure_rows(self, rows: int) -> None:
        """Grow the row capacity (doubling) so that `rows` rows fit; keeps what is stored."""
        if rows <= self._capacity:
            return
        capacity = max(rows, 2 * self._capacity)
        grown = torch.full((self.slots, capacity, len(self.columns), *self.extra_shape), math.nan, device=self.device)
        grown[:, : self._capacity] = self.values
        self.values, self._capacity = grown, capacity
        self._host = self._host_view()

    def _host_view(self) -> np.ndarray | None:
        # on the CPU, numpy indexing of the same memory costs a fraction of a torch index_put_
        return self.values.numpy() if self.device.type == "cpu" else None

    def open_slot(self, step: int) -> int:
        """Start recording `step`; return its slot index."""
        self.steps.append(step)
        self.present.append(set())
        return len(self.steps) - 1

    def write(self, slots: np.ndarray, rows: np.ndarray, columns: np.ndarray, values: torch.Tensor) -> None:
        """Write `values` ``(n, len(columns), *extra)``: row i goes to slot ``slots[i]``, row ``rows[i]``.

        `slots`, `rows` and `columns` are int64 numpy arrays; one call can fill several slots.
        """
        if self._host is not None and values.device.type == "cpu":
            self._host[slots[:, None], rows[:, None], columns[None, :]] = values.numpy()
        else:
            values = values.to(self.device, self.values.dtype)
            slot_list = slots.tolist()
            start = 0
            for end in range(1, len(slot_list) + 1):  # one write per run of rows of the same slot
                if end == len(slot_list) or slot_list[end] != slot_list[start]:
                    row_index, column_index = self._index_on_device(rows[start:end], columns)
                    self.values[slot_list[start]].index_put_((row_index, column_index), values[start:end])
                    start = end
        for slot, row in zip(slots.tolist(), rows.tolist()):
            self.present[slot].add(row)

    def _index_on_device(self, rows: np.ndarray, columns: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        key = (rows.tobytes(), columns.tobytes())
        index = self._device_index.get(key)
        if index is None:
            index = self._device_index[key] = (
                torch.from_numpy(np.ascontiguousarray(rows[:, None])).to(self.device),
                torch.from_numpy(np.ascontiguousarray(columns[None, :])).to(self.device),
            )
        return index

    def write_slot(
        self, slot: int, rows: list[int], columns: np.ndarray, flat: np.ndarray, values: torch.Tensor
    ) -> None:
        """Write `values` ``(len(rows), len(columns))`` into one slot; `flat` holds ``row * width + column``
        of each value in row-major order (width: the number of columns), so the CPU path is one
        indexed store: this runs for the weights on every recorded step."""
        if self._host is not None and values.device.type == "cpu" and not self.extra_shape:
            self._host[slot].reshape(-1)[flat] = values.numpy().reshape(-1)
            self.present[slot].update(rows)
        else:
            self.write(np.full(len(rows), slot, dtype=np.int64), np.asarray(rows, dtype=np.int64), columns, values)

    def drain(self) -> tuple[np.ndarray, list[int], list[set[int]]]:
        """Copy the used slots to the host in one transfer, reset them to NaN, return (values, steps, present)."""
        used = self.used
        host = self.values[:used].cpu().numpy().copy()
        self.values[:used].fill_(math.nan)
        steps, present = self.steps, self.present
        self.steps, self.present = [], []
        return host, steps, present


def frame_from_drain(
    host: np.ndarray,
    steps: list[int],
    present: list[set[int]],
    rows: list[RowInfo],
    layout: RowLayout,
) -> pd.DataFrame:
    """Return the drained statistics ``(slots, rows, len(layout.raw))`` as a table: one row per
    (step, layer) present, id columns first, then ``layout.published`` as `layout.derive` gives them."""
    slot_index: list[int] = []
    row_index: list[int] = []
    for slot, row_ids in enumerate(present):
        ordered = sorted(row_ids, key=lambda r: rows[r].order)
        slot_index.extend([slot] * len(ordered))
        row_index.extend(ordered)
    if slot_index:
        values = host[np.asarray(slot_index, dtype=np.int64), np.asarray(row_index, dtype=np.int64)].astype(np.float64)
    else:
        values = np.empty((0, len(layout.raw)), dtype=np.float64)
    derived = layout.derive({name: values[:, i] for i, name in enumerate(layout.raw)})
    frame = pd.DataFrame({name: np.broadcast_to(derived[name], (len(values),)) for name in layout.published})
    ids = pd.DataFrame(
        {
            "step": np.asarray([steps[s] for s in slot_index], dtype=np.int64),
            "layer": [rows[r].layer for r in row_index],
            "order": np.asarray([rows[r].order for r in row_index], dtype=np.int64),
            "kind": [rows[r].kind for r in row_index],
            "module_type": [rows[r].module_type for r in row_index],
            "activation": [rows[r].activation for r in row_index],
        }
    )
    return pd.concat([ids, frame], axis=1)
