"""What both framework callbacks share: one probe over one training run, its outputs, alerts and closing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from ..analysis.verdicts import THRESHOLDS, Thresholds
from ..diagnose import check_on_alert
from ..errors import ProbeError
from ..probe import Probe
from ..sinks import MultiSink, Sink
from .alerts import AlertJudge, OnAlert
from .store_run import StoreRun

__all__ = ["TrainingProbe", "CallbackResults", "DEFAULT_EVERY", "DEFAULT_CHECK_EVERY"]

DEFAULT_EVERY = 10  # the lab's schedule: cheap enough to leave on, dense enough to alert within ~30 steps
# optimizer steps between alert checks: a check flushes the probe and runs diagnose's verdicts
# (tens of milliseconds), so at 50 it costs under a millisecond per step; an alert comes at most
# about check_every + 2 * every steps after a problem's first recorded sign
DEFAULT_CHECK_EVERY = 50


class TrainingProbe:
    """A `Probe` started at train start, stepped once per optimizer step, closed at the end or on an error.

    Rows go to `sink` (closed at the end of training), to the results database at `store`, and,
    unless `on_alert` is None, to an `AlertJudge` checked every `check_every` optimizer steps.
    Other keyword arguments are `Probe`'s (``layers``, ``histograms``, ``percentiles``, ...).
    """

    def __init__(
        self,
        *,
        every: Any = DEFAULT_EVERY,
        sink: Sink | None = None,
        store: str | Path | None = None,
        run_name: str | None = None,
        on_alert: OnAlert = "warn",
        thresholds: Thresholds = THRESHOLDS,
        check_every: int = DEFAULT_CHECK_EVERY,
        layers: Iterable[Any] | None = None,
        **probe_options: Any,
    ) -> None:
        check_on_alert(on_alert, none_allowed=True)
        if check_every < 1:
            raise ProbeError(f"check_every must be a positive number of optimizer steps, got {check_every!r}")
        if "model" in probe_options or "grad_scaler" in probe_options:
            raise ProbeError("the callback passes the model (and the trainer's grad scaler) to the probe itself")
        self.every, self.sink, self.store_path, self.run_name = every, sink, store, run_name
        self.on_alert, self.thresholds, self.check_every = on_alert, thresholds, check_every
        self.layers, self.probe_options = layers, probe_options
        self.probe: Probe | None = None
        self._kept: Probe | None = None  # the last closed probe, for frame() after training
        self.judge: AlertJudge | None = None
        self.store_run: StoreRun | None = None
        self.steps = 0
        self._sinks: MultiSink | None = None

    @property
    def run_id(self) -> str | None:
        """Return the stored run's id (None without `store`)."""
        return self.store_run.run_id if self.store_run is not None else None

    def start(self, model: nn.Module, *, framework: str, scaler: Any = None, writes: bool = True) -> None:
        """Attach a new probe to `model`; `writes` False (ranks other than 0) keeps sinks, store and alerts off."""
        self.close()  # a probe left open by a training that ended without a hook (HF after an exception)
        self.steps = 0
        self.judge = AlertJudge(self.on_alert, self.thresholds) if writes and self.on_alert is not None else None
        self.store_run = None
        store_path = self.store_path if writes else None
        self._sinks = MultiSink(*(s for s in (self.sink if writes else None, self.judge) if s))
        options = dict(self.probe_options)
        if scaler is not None:
            options["grad_scaler"] = scaler  # gradients divided by the scale; skipped steps marked
        # the probe first: a bad probe option must not leave a stored run begun and never ended
        self.probe = Probe(
            model,
            every=self.every,
            layers=self.layers,
            sink=self._sinks if self._sinks.sinks or store_path is not None else None,
            **options,
        )
        if store_path is not None:
            spec = {
                "source": framework,
                "model": type(model).__name__,
                "probe": {"every": self.every if isinstance(self.every, int) else repr(self.every)},
            }
            name = self.run_name or f"{framework}:{type(model).__name__}"
            self.store_run = StoreRun(store_path, name, spec)
            self._sinks.sinks.append(self.store_run)
        self.probe.start()

    def optimizer_step(self) -> None:
        """Advance the probe by one optimizer step (recording it if scheduled); check alerts when due."""
        if self.probe is None:
            return
        self.probe.step()
        self.steps += 1
        if self.judge is not None and self.steps % self.check_every == 0:
            self.probe.flush()
            try:
                self.judge.check()
            except BaseException as alert:  # on_alert="raise": training stops, nothing recorded is lost
                self.close(alert)
                raise

    def close(self, error: BaseException | None = None) -> None:
        """Remove the probe's hooks, flush its rows to every sink, close them and end the stored run."""
        probe, self.probe = self.probe, None
        if probe is None:
            return
        try:
            probe.close()
        finally:
            self._kept = probe
            try:
                if self._sinks is not None:
                    self._sinks.close()
            finally:
                if self.store_run is not None:
                    self.store_run.finish(self.steps, error)

    def _recorded(self) -> Probe:
        probe = self.probe or self._kept
        if probe is None:
            raise ProbeError("nothing recorded yet: the callback's probe starts when training starts")
        return probe

    def frame(self) -> pd.DataFrame:
        """Return the rows recorded so far, as `Probe.frame()` (one row per step and layer)."""
        return self._recorded().frame()

    def histogram_frame(self) -> pd.DataFrame:
        """Return the recorded histograms, as `Probe.histogram_frame()` (needs ``histograms=True``)."""
        return self._recorded().histogram_frame()


class CallbackResults:
    """What a callback offers after (or during) training, read from its `TrainingProbe` `session`."""

    session: TrainingProbe

    @property
    def probe(self) -> Probe | None:
        """Return the probe while training runs (None before and after)."""
        return self.session.probe

    @property
    def run_id(self) -> str | None:
        """Return the id of the run written to `store` (None without one)."""
        return self.session.run_id

    @property
    def alerts(self) -> list[Any]:
        """Return the GradientAlerts raised, warned or handed to `on_alert` so far."""
        return self.session.judge.alerts if self.session.judge is not None else []

    def frame(self) -> pd.DataFrame:
        """Return the recorded rows, as `Probe.frame()`: one row per (optimizer step, layer)."""
        return self.session.frame()

    def histogram_frame(self) -> pd.DataFrame:
        """Return the recorded histograms, as `Probe.histogram_frame()` (needs ``histograms=True``)."""
        return self.session.histogram_frame()
