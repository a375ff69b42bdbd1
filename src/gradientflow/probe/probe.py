"""The Probe: what a recorded step's forward pass applies, and batched statistics at the step's end.

During a recorded step the capture (capture.py) only keeps detached references to the inputs of
activations (a copy where an in-place op would overwrite one). At ``probe.step()`` all statistics
are computed in a few batched ops per group of same-shaped layers, written into an on-device
buffer, and copied to the host once every `flush_every` recorded steps. On steps the schedule
skips, no hook and no mode is attached at all, so the model runs exactly as without the probe.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import ProbeError
from ..records import DEFAULT_PERCENTILES
from .amp import GradScaleTracker, check_grad_scaler
from .batchnorm import BN_COLUMNS, Moments, batch_statistics, batchnorm_row, pooled_moments, pooled_unit_moments
from .buffer import RowInfo, StatsBuffer, frame_from_drain
from .capture import ForwardCapture, default_units
from .compiled import EagerWhileRecording, unwrap_compiled
from .devices import module_device
from .distributed import RankReducer, resolve_distributed, unwrap_data_parallel
from .histograms import HistogramRecorder
from .kept import KeptTensors
from .layout import WEIGHT_RAW, RowLayout
from .pending import PendingActivations
from .rules import SaturationRule, rule_for_name
from .schedule import Schedule, as_schedule
from .selection import Role, select_modules
from .stats import RAW_GRADIENT, as_units_layout
from .weights import WeightTracker

__all__ = ["Probe", "tap", "NoActivationWarning"]

_ACTIVE: list[Probe] = []
Sink = Callable[[pd.DataFrame, "pd.DataFrame | None"], None]


class NoActivationWarning(UserWarning):
    """A recorded step of a probe found no activation: its table would hold weight rows only."""


def tap(tensor: torch.Tensor, name: str, activation: str = "linear") -> torch.Tensor:
    """Record `tensor` as the pre-activation of an activation in every active probe (kind ``tap``).

    Returns `tensor` itself, so it can wrap the argument inline:
    ``h = torch.sigmoid(gradientflow.tap(z, "block1.sigmoid", "sigmoid"))``; that sigmoid call
    then gives no row of its own. Without an active probe it does nothing.
    """
    for probe in _ACTIVE:
        probe.tap(tensor, name, activation)
    return tensor


class Probe:
    """Record per-layer forward and backward statistics of `model` at the steps a schedule picks.

    Use as a context manager; call ``probe.step()`` once per optimizer step (after
    ``optimizer.step()``); read ``probe.frame()``: one row per (step, layer). Every column's
    definition: docs/probe-reference.md, "What the probe records".

    Args:
        model: any module, unchanged. Every activation applied in its forward pass gives an
            activation row about its input: modules of known or registered classes (named by
            the module), torch's functions and Tensor methods (``<module>:<function>``, ``#k``
            for repeated calls); modules with a ``weight`` parameter give weight/norm rows.
        every: record every k-th step (0, k, 2k, ...), or a callable ``step -> bool``.
        layers: restrict to modules whose qualified name matches a pattern (fnmatch) or whose
            type is listed, e.g. ``["fc*", nn.Sigmoid]``; a chosen module's functional
            activations come with it, and a pattern may name functional rows (``"*:relu*"``).
        percentiles: pre-activation percentiles, in percent.
        saturation_eps: an element is saturated where |phi'(x)| < eps * max |phi'|.
        flush_every: recorded steps kept on the device between copies to the host.
        histograms: also record fixed-bin histograms (see `histogram_frame`).
        unit_dim: the dimension of every pre-activation that indexes units; None (default)
            follows the last layer with a weight before it: Linear-like layers' last dimension
            (features of (batch, sequence, features)), Conv/BatchNorm's channels (dimension 1).
        sink: called with each flushed chunk ``(stats, histograms or None)``, e.g. a store writer.
        keep: keep flushed chunks in memory for `frame()` (set False with a sink for long runs).
        background: ignored, deprecated (a background thread for small layers' statistics was
            measured to give no gain and removed); passing it warns.
        grad_scaler: the ``torch.amp.GradScaler`` of a mixed-precision loop: gradients are recorded
            unscaled, and steps the scaler skipped (inf/NaN) are left out and listed in
            `skipped_steps`. Call ``probe.step()`` after ``scaler.step(optimizer)``.
        distributed: reduce statistics across DDP ranks at each flush, rank 0 keeping and writing
            the rows: True, False, or "auto" (when torch.distributed is initialized with several
            processes). See docs/training-stacks.md.

    `model` may be the ``OptimizedModule`` of ``torch.compile`` (recorded steps run eagerly) or a
    ``DistributedDataParallel``; the module inside is probed, and layer names are its own.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        every: int | Schedule = 1,
        layers: Iterable[str | type[nn.Module]] | None = None,
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        saturation_eps: float = 0.05,
        flush_every: int = 100,
        histograms: bool = False,
        histogram_bins: int = 64,
        unit_dim: int | None = None,
        max_percentile_samples: int = 4096,
        sink: Sink | None = None,
        keep: bool = True,
        background: bool | None = None,
        grad_scaler: torch.amp.GradScaler | None = None,
        distributed: bool | str = "auto",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ProbeError(f"Probe needs a torch.nn.Module, got {type(model).__name__}")
        if not 0.0 < saturation_eps < 1.0:
            raise ProbeError(f"saturation_eps must be in (0, 1), got {saturation_eps!r}")
        if flush_every < 1:
            raise ProbeError(f"flush_every must be >= 1, got {flush_every!r}")
        if any(not 0.0 <= q <= 100.0 for q in percentiles):
            raise ProbeError(f"percentiles must be in [0, 100], got {list(percentiles)!r}")
        model, compiled = unwrap_compiled(unwrap_data_parallel(model))
        self._eager = EagerWhileRecording(compiled)
        model = unwrap_data_parallel(model)
        self.model = model
        self.schedule = as_schedule(every)
        self.percentiles = tuple(float(q) for q in percentiles)
        self.saturation_eps = saturation_eps
        self.unit_dim = unit_dim
        self.max_percentile_samples = max_percentile_samples
        self.sink, self.keep = sink, keep
        self._layout = RowLayout(self.percentiles)
        self.columns = self._layout.published
        self._raw_columns = self._layout.raw
        self._col = self._layout.positions
        self._selection = select_modules(model, layers, saturation_eps)
        self._weights = self._selection.weights()
        self._modules_by_name = {name: module for module, name in self._weights.items()}
        self._device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._buffer = StatsBuffer(self._raw_columns, flush_every, self._device)
        self._histograms = HistogramRecorder(histogram_bins, flush_every, self._device) if histograms else None
        self._rows: dict[str, RowInfo] = {}
        self._row_list: list[RowInfo] = []
        self._frames: list[Any] = []  # tables, or drained values not turned into a table yet (see flush)
        self._histogram_frames: list[pd.DataFrame] = []
        self._handles: list[Any] = []
        self._forward = ForwardCapture(self, self._selection, saturation_eps, unit_dim)
        self._root_frames: list[bool] = []  # per root forward call in progress: capture began there
        self._warned_empty = False
        self._index_cache: dict[
            tuple[tuple[str, ...], tuple[str, ...]], tuple[list[int], np.ndarray, np.ndarray, np.ndarray]
        ] = {}  # (keys, columns) -> (row ids, rows, columns, flat)
        self._modes: dict[nn.Module, bool] = {}
        self._step = 0
        self._recording = False
        self._open = False
        self._weight_tracker = WeightTracker(list(self._weights))
        self._weight_rows: tuple[int, list[nn.Module], list[str]] = (-1, [], [])  # (rows known, modules, keys)
        self._snapshot_fresh = False
        if background is not None:
            warnings.warn(
                "Probe(background=...) is deprecated and has no effect: statistics are computed on the "
                "calling thread (a background thread measured no gain); remove the argument",
                DeprecationWarning,
                stacklevel=2,
            )
        self._pending = PendingActivations(
            self.percentiles, max_percentile_samples, 1 if unit_dim is None else unit_dim
        )
        self._kept = KeptTensors()
        scaler = check_grad_scaler(grad_scaler)
        self._amp = GradScaleTracker(scaler, flush_every) if scaler is not None else None
        #: steps the grad scaler skipped (inf/NaN gradients): their rows are left out of the table
        self.skipped_steps: list[int] = []
        self._reducer = RankReducer(self._layout) if resolve_distributed(distributed) else None
        self._reset_captures()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Probe:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # an exception may have stopped this rank alone: waiting for the others could hang
        self.close(reduce=exc_type is None)

    def start(self) -> Probe:
        """Attach the probe (hooks only on recorded steps); return self. ``with Probe(...)`` calls this."""
        if self._open:
            raise ProbeError("this probe is already started; use one `with Probe(...)` block per probe")
        self._open = True
        self._modes = {m: m.training for m in self.model.modules()}
        _ACTIVE.append(self)
        self._set_recording(self.schedule(self._step))
        return self

    def close(self, reduce: bool = True) -> None:
        """Remove every hook, flush what is recorded, and restore each module's train/eval mode.

        A distributed probe's last flush is collective; ``reduce=False`` (used when closing on an
        exception) skips it and drops the rows recorded since the previous flush."""
        if not self._open:
            return
        if not reduce and self._reducer is not None:
            self._drop_unreduced()
        try:
            self._eager.exit()
            self._detach()
            self._open = False
            if self in _ACTIVE:
                _ACTIVE.remove(self)
            for module, training in self._modes.items():
                module.training = training
        finally:
            self._reset_captures()
            self._compute_pending()
            self.flush()

    @property
    def step_index(self) -> int:
        """Return the index (0-based) of the optimizer step now in progress."""
        return self._step

    def step(self) -> None:
        """Mark the end of one optimizer step: compute its statistics if it is recorded."""
        if not self._open:
            raise ProbeError("probe.step() called outside the `with Probe(...)` block")
        if self._recording:
            self._record()
        self._reset_captures()
        self._step += 1
        self._set_recording(self.schedule(self._step))

    def _set_recording(self, recording: bool) -> None:
        self._recording = recording
        if recording and not self._handles:
            self._attach()
        elif not recording and self._handles:
            self._detach()
        if recording:
            self._eager.enter()
            if self._amp is not None:
                self._amp.begin()
        else:
            self._eager.exit()

    def _attach(self) -> None:
        # two hooks on the root only: the capture's own hooks and mode exist only while its forward runs
        self._handles.append(self.model.register_forward_pre_hook(self._on_root_forward))
        self._handles.append(self.model.register_forward_hook(self._on_root_return, always_call=True))

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._forward.active:
            self._forward.end()
        self._root_frames.clear()

    def _reset_captures(self) -> None:
        self._kept.close()
        self._kept = KeptTensors()
        self._bn_inputs: dict[str, list[Moments]] = defaultdict(
            list
        )  # per call: examples per unit, unit means, variances
        self._calls: dict[str, int] = defaultdict(int)
        self._forward_seen = False
        self._snapshot_fresh = False

    # ------------------------------------------------------------------ hooks
    def _row(self, key: str, kind: str, module_type: str, activation: str | None) -> RowInfo:
        row = self._rows.get(key)
        if row is None:
            row = RowInfo(len(self._row_list), key, len(self._row_list), kind, module_type, activation)
            self._rows[key] = row
            self._row_list.append(row)
            self._buffer.ensure_rows(len(self._row_list))
            if self._histograms is not None:
                self._histograms.ensure_rows(len(self._row_list))
        return row

    def call_key(self, name: str) -> str:
        """Return the row key of the next call named `name` in this forward pass: `name`, then `name#1`, ..."""
        count = self._calls[name]
        self._calls[name] = count + 1
        return name if count == 0 else f"{name}#{count}"

    _call_key = call_key

    def _on_root_forward(self, module: nn.Module, args: Any) -> None:
        # a forward recomputed during backward (activation checkpointing) was captured when it first ran
        began = (
            not self._root_frames
            and torch.is_grad_enabled()
            and torch._C._current_graph_task_id() == -1
            and not self._forward.active
        )
        self._root_frames.append(began)
        if not began:
            return
        self._calls.clear()
        self._forward_seen = True
        if not self._snapshot_fresh:
            self._take_snapshot()
        self._forward.begin(module, args)

    def _on_root_return(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._root_frames and self._root_frames.pop() and self._forward.active:
            self._forward.end()

    # the capture's reports (see capture.CaptureTarget)
    def discovered(self, role: Role) -> None:
        """A weight or norm layer ran: its row exists from now on, in forward order."""
        self._row(role.name, role.kind or "weight", role.module_type, None)

    def norm_output(self, role: Role, module: nn.Module, x: torch.Tensor, output: Any) -> None:
        """A BatchNorm-like layer returned: keep what it saw in its input."""
        self._bn_inputs[role.name].append(batch_statistics(x, output))

    def keeps_storage(self) -> bool:
        """Return True if some kept tensor shares memory with the model's (see `protect`)."""
        return self._kept.shares_storage()

    def tapped(self, tensor: torch.Tensor) -> bool:
        """Return True if `tensor` was tapped with an activation name in this step."""
        return self._kept.tapped(tensor)

    def protect(self, tensor: torch.Tensor) -> None:
        """`tensor` is about to be written in place: copy what the probe keeps of it first."""
        self._kept.protect(tensor)

    def capture(
        self,
        key: str,
        x: torch.Tensor,
        rule: SaturationRule,
        kind: str,
        module_type: str,
        copy: bool = False,
        units: int = 1,
        hook: bool = False,
    ) -> None:
        """Give `x` a row `key` and keep it as that row's pre-activation (see `KeptTensors.keep`)."""
        self._row(key, kind, module_type, rule.name)
        self._kept.keep(key, x, rule, copy, units, hook)

    _capture = capture

    def tap(self, tensor: torch.Tensor, name: str, activation: str = "linear") -> torch.Tensor:
        """Record `tensor` as the pre-activation of an activation named `activation`, in row `name`
        (kind ``tap``); return `tensor` unchanged.

        The probe finds activations by itself; a tap names one explicitly, or records a tensor
        that is no activation's input (``"linear"``). An activation then applied to the tapped
        tensor gives no row of its own; an in-place one is recorded before it writes.
        """
        if self._open and self._recording and torch.is_grad_enabled():
            rule = self._kept.rules.get(name) or rule_for_name(activation, self.saturation_eps)
            if self._forward.active:
                units = self._forward.units_of(tensor)
            else:
                units = self.unit_dim if self.unit_dim is not None else default_units(tensor)
            # a hook, not retain_grad: the gradient before any in-place write, also outside the capture
            self._capture(self._call_key(name), tensor, rule, "tap", "tap", units=units, hook=True)
            if activation != "linear":
                self._kept.mark_tapped(tensor)
        return tensor

    # ------------------------------------------------------------------ statistics
    def _take_snapshot(self) -> None:
        self._weight_tracker.snapshot()
        self._snapshot_fresh = True

    def _record(self) -> None:
        self._warn_if_empty()
        self._kept.collect_retained()
        self._follow_device()
        with torch.no_grad():
            slot = self._buffer.open_slot(self._step)
            scale: torch.Tensor | float | None = self._amp.record(slot) if self._amp is not None else None
            if self._reducer is not None:  # each rank's gradient is the world size times its share (distributed.py)
                scale = self._reducer.world * (1.0 if scale is None else scale)
            self._record_activations(slot)
            self._record_weights(slot)
            self._record_batchnorm(slot)
            if self._histograms is not None:
                self._histograms.record(self._step, self._kept.pre, self._kept.grads, self._rows, scale)
        if self._buffer.full or (self._histograms is not None and self._histograms.full):
            self.flush()

    def _warn_if_empty(self) -> None:
        if self._warned_empty or not self._forward_seen or self._kept.pre:
            return
        if not self._selection.everything and self._rows:
            return  # `layers` chose weight rows only, on purpose
        self._warned_empty = True
        leaves = ", ".join(f"{name} ({cls})" for name, cls in list(self._forward.seen_leaves.items())[:20])
        seen = f"the weight-less leaf modules it ran were: {leaves}" if leaves else "it ran no weight-less leaf module"
        warnings.warn(
            f"the probe found no activation in recorded step {self._step} of {type(self.model).__name__}; "
            f"{seen}. If one of them is an activation, opt it in with "
            "gradientflow.register_activation(ItsClass, 'gelu') (any name of "
            "gradientflow.probe.ACTIVATION_NAMES), a class attribute gradientflow_activation = 'gelu', "
            "or gradientflow.tap(x, 'name', 'gelu') on its input",
            NoActivationWarning,
            stacklevel=3,
        )

    def _write(self, slots: int | list[int], keys: list[str], columns: Sequence[str], values: torch.Tensor) -> None:
        """Write `values` (one row per key) into the buffer: all in slot `slots`, or key i in ``slots[i]``."""
        cache_key = (tuple(keys), tuple(columns))
        indices = self._index_cache.get(cache_key)
        if indices is None:
            row_ids = [self._rows[k].index for k in keys]
            rows = np.array(row_ids, dtype=np.int64)
            column_index = np.array([self._col[c] for c in columns], dtype=np.int64)
            flat = (rows[:, None] * len(self._raw_columns) + column_index[None, :]).reshape(-1)
            indices = self._index_cache[cache_key] = (row_ids, rows, column_index, flat)
        row_ids, rows, column_index, flat = indices
        if isinstance(slots, int):
            self._buffer.write_slot(slots, row_ids, column_index, flat, values)
        else:
            self._buffer.write(np.array(slots, dtype=np.int64), rows, column_index, values)

    def _record_activations(self, slot: int) -> None:
        for key, x, g, rule, owned in self._kept.pooled():
            self._pending.add(slot, key, x, g, rule, owned)
            if self._reducer is not None:  # dead units combine across ranks only per unit
                dead = rule.saturated(as_units_layout(x, self._pending.unit_dim)).all(dim=2).all(dim=0)
                self._reducer.keep_dead_units(slot, key, dead)
        if self._pending.end_step():
            self._compute_pending()

    def _compute_pending(self) -> None:
        for slots, keys, columns, values in self._pending.results():
            self._write(slots, keys, columns, values)

    def _record_weights(self, slot: int) -> None:
        if self._weight_rows[0] != len(self._rows):  # a row was discovered since the list was made
            modules = [m for m in self._weights if self._weights[m] in self._rows]
            self._weight_rows = (len(self._rows), modules, [self._weights[m] for m in modules])
        _, modules, keys = self._weight_rows
        if not modules:
            return
        if not self._snapshot_fresh:
            self._weight_tracker.forget()
        # when the next step is recorded too, the update pass keeps the weights as its snapshot
        values = self._weight_tracker.measure(modules, keep_next=self.schedule(self._step + 1))
        self._write(slot, keys, WEIGHT_RAW, values)

    def _record_batchnorm(self, slot: int) -> None:
        for key, calls in self._bn_inputs.items():
            module = self._modules_by_name[key]
            self._write(slot, [key], BN_COLUMNS, batchnorm_row(module, pooled_moments(calls)))
            if self._reducer is not None:  # the pooled variance across ranks needs each unit's moments
                self._reducer.keep_unit_moments(slot, key, *pooled_unit_moments(calls))

    def _follow_device(self) -> None:
        device = module_device(self.model, next(iter(self._weights), None))
        if device != self._buffer.device:
            self._buffer.to(device)
            if self._histograms is not None:
                self._histograms.to(device)

    def _drop_unreduced(self) -> None:
        self._compute_pending()
        steps = self._buffer.drain()[1]
        if self._histograms is not None:
            self._histograms.drain(self._row_list)
        self._reducer.discard()  # type: ignore[union-attr]
        if steps:
            warnings.warn(
                f"gradientflow: steps {steps[0]}..{steps[-1]} were not reduced across ranks (the probe closed "
                "on an exception, so the other ranks may not flush) and are dropped",
                RuntimeWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ output
    def flush(self) -> None:
        """Copy recorded statistics to the host (one transfer) and hand them to the sink / keep them.

        Without a sink the drained values are kept as they are and turned into a table only when
        `frame()` asks: building a DataFrame costs milliseconds, which would otherwise land on the
        training step that flushes.
        """
        self._compute_pending()
        if self._buffer.used == 0 and (self._histograms is None or self._histograms.used == 0):
            return
        drained = self._buffer.drain()
        histograms = self._histograms.drain(self._row_list) if self._histograms is not None else None
        if self._amp is not None:
            skipped = self._amp.apply(*drained, [self._col[c] for c in RAW_GRADIENT])
            self.skipped_steps += skipped
            if skipped and histograms is not None:
                histograms = histograms[~histograms["step"].isin(skipped)].reset_index(drop=True)
        if self._reducer is not None:
            if histograms is not None:
                histograms = self._reducer.reduce_histograms(histograms)
            reduced = self._reducer.reduce(drained, self._row_list)
            if reduced is None:
                return  # another rank than 0: rank 0 holds and writes the rows
            drained = reduced
        if self.sink is not None:
            stats = self._frame_of(drained)
            self.sink(stats, histograms)
            if self.keep:
                self._frames.append(stats)
        elif self.keep:
            self._frames.append(drained)
        if self.keep and histograms is not None:
            self._histogram_frames.append(histograms)

    def _frame_of(self, drained: tuple[np.ndarray, list[int], list[set[int]]]) -> pd.DataFrame:
        return frame_from_drain(*drained, self._row_list, self._layout)

    def frame(self) -> pd.DataFrame:
        """Return every recorded row kept so far: one row per (step, layer), columns as in records.LAYER_ID_COLUMNS + stats."""
        self.flush()
        self._frames = [chunk if isinstance(chunk, pd.DataFrame) else self._frame_of(chunk) for chunk in self._frames]
        if not self._frames:
            return self._frame_of(self._buffer.drain())
        return pd.concat(self._frames, ignore_index=True)

    def histogram_frame(self) -> pd.DataFrame:
        """Return the recorded histograms: columns step, layer, quantity, bin_left, bin_right, count."""
        if self._histograms is None:
            raise ProbeError("histograms were not recorded: create the probe with Probe(model, histograms=True)")
        self.flush()
        if not self._histogram_frames:
            return self._histograms.drain(self._row_list)
        return pd.concat(self._histogram_frames, ignore_index=True)
