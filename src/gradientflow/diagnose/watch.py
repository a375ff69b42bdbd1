"""`gf.watch(model)`: the diagnosis while the user's own loop trains, with an alert soon after a problem appears.

The monitor records every step for the first steps (problems at initialization), then every
`every`-th step, and judges the most recent records every `check_every` steps with the same
verdicts as `gradientflow diagnose`. Each problem is alerted once, at most
``2 * every + check_every`` steps after its first recorded sign (a problem must show on most of
`window` consecutive records before it counts).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..analysis.verdicts import THRESHOLDS, Diagnosis, Problem, Thresholds, diagnose_frame
from ..errors import GradientflowError, ProbeError
from ..probe import Probe
from .fixes import Fix, rank_fixes
from .hooks import stream_taps
from .report import format_report

__all__ = ["GradientAlert", "GradientWarning", "Monitor", "WatchReport", "watch", "new_alerts", "check_on_alert"]

DENSE_STEPS = 10  # every step at first: problems at initialization show on the first records
KEEP_RECORDS = 2000  # recorded steps kept for report(); older ones are dropped to bound memory


class GradientWarning(UserWarning):
    """Warning category of `watch(..., on_alert="warn")` alerts."""


class GradientAlert(GradientflowError):
    """A problem `watch` found: `problem` (verdict, first layer, step, cause), the `diagnosis`, ranked `fixes`."""

    def __init__(self, problem: Problem, diagnosis: Diagnosis, fixes: list[Fix]) -> None:
        self.problem, self.diagnosis, self.fixes = problem, diagnosis, fixes
        fix = f" Best fix: {fixes[0].action}." if fixes else ""
        super().__init__(
            f"gradientflow: {problem.verdict} at {problem.layer} since step {problem.step}: {problem.cause}.{fix}"
        )


@dataclass(frozen=True)
class WatchReport:
    """What `Monitor.report()` returns: the diagnosis of everything recorded, and ranked fixes; ``str()`` is the verdict table."""

    diagnosis: Diagnosis
    fixes: tuple[Fix, ...]
    steps: int  # optimizer steps seen

    @property
    def verdict(self) -> str:
        """Return the root verdict: healthy or the first problem's."""
        return self.diagnosis.verdict

    def __str__(self) -> str:
        return format_report(self.diagnosis, self.fixes)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the diagnosis, the fixes, the steps seen)."""
        return {"steps": self.steps, **self.diagnosis.to_dict(), "fixes": [f.to_dict() for f in self.fixes]}


OnAlert = str | Callable[[GradientAlert], Any]


def check_on_alert(on_alert: object, *, none_allowed: bool = False) -> None:
    """Raise ProbeError unless `on_alert` is "warn", "raise", a callable, or (`none_allowed`: the
    training callbacks, where None turns alerts off) None."""
    if none_allowed and on_alert is None:
        return
    if not (callable(on_alert) or on_alert in ("warn", "raise")):
        allowed = (
            "'warn', 'raise', a callable taking the GradientAlert, or None"
            if none_allowed
            else ("'warn', 'raise' or a callable taking the alert")
        )
        raise ProbeError(f"on_alert must be {allowed}, got {on_alert!r}")


def new_alerts(frame: pd.DataFrame, thresholds: Thresholds, alerted: set[str]) -> list[GradientAlert]:
    """Return one alert per problem that the recorded rows in `frame` show and whose verdict is not
    in `alerted` yet (added to it now); none when no activation was recorded."""
    if frame.empty or not frame["kind"].isin(["activation", "tap"]).any():
        return []
    diagnosis = diagnose_frame(frame, thresholds)
    alerts = []
    for problem in ([diagnosis.problem] if diagnosis.problem else []) + list(diagnosis.others):
        if problem.verdict not in alerted:
            alerted.add(problem.verdict)
            alerts.append(GradientAlert(problem, diagnosis, rank_fixes(diagnosis)))
    return alerts


class Monitor:
    """A probe on `model` that judges its records as training goes; see `watch`."""

    def __init__(
        self,
        model: nn.Module,
        on_alert: OnAlert = "warn",
        within: int = 50,
        every: int | None = None,
        layers: Iterable[Any] | None = None,
        thresholds: Thresholds = THRESHOLDS,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        check_on_alert(on_alert)
        if within < 5:
            raise ProbeError(
                f"within must be at least 5 steps (it sets how often the monitor records and checks), got {within!r}"
            )
        self.on_alert, self.within, self.thresholds = on_alert, within, thresholds
        self.every = every or max(1, within // 10)
        self.check_every = max(1, within // 5)
        if 2 * self.every + self.check_every > within:
            raise ProbeError(
                f"every={self.every} is too sparse to alert within {within} steps; use every <= {(within - self.check_every) // 2}"
            )
        self.alerts: list[GradientAlert] = []
        self._alerted: set[str] = set()
        self._chunks: list[pd.DataFrame] = []
        self._steps = 0
        self._stack = contextlib.ExitStack()
        self._probe = Probe(
            model,
            every=self._records,
            layers=layers,
            keep=False,
            sink=self._collect,
            flush_every=self.check_every,
            grad_scaler=grad_scaler,
        )
        self._stack.enter_context(self._probe)
        self._stack.enter_context(stream_taps(model))

    def _records(self, step: int) -> bool:
        return step < DENSE_STEPS or step % self.every == 0

    def _collect(self, stats: pd.DataFrame, _histograms: pd.DataFrame | None) -> None:
        self._chunks.append(stats)

    def _frame(self, last_records: int | None = None) -> pd.DataFrame:
        self._probe.flush()
        if not self._chunks:
            return pd.DataFrame()
        frame = pd.concat(self._chunks, ignore_index=True)
        steps = sorted(frame["step"].unique())
        if len(steps) > KEEP_RECORDS:
            frame = frame[frame["step"] >= steps[-KEEP_RECORDS]]
        self._chunks = [frame]
        if last_records is not None and len(steps) > last_records:
            frame = frame[frame["step"] >= steps[-last_records]]
        return frame

    def step(self) -> None:
        """Mark the end of one optimizer step (call it after ``optimizer.step()``); alert if a new problem shows."""
        self._probe.step()
        self._steps += 1
        if self._steps % self.check_every == 0:
            self._check()

    def _check(self) -> None:
        recent = (self.within // self.every) + self.thresholds.window + DENSE_STEPS
        for alert in new_alerts(self._frame(recent), self.thresholds, self._alerted):
            self._alert(alert)

    def _alert(self, alert: GradientAlert) -> None:
        self.alerts.append(alert)
        if self.on_alert == "raise":
            self._probe.close(reduce=False)  # under DDP only rank 0 alerts: the other ranks will not flush with it
            self.close()
            raise alert
        if self.on_alert == "warn":
            warnings.warn(str(alert), GradientWarning, stacklevel=4)
        else:
            self.on_alert(alert)  # type: ignore[operator]

    def report(self) -> WatchReport:
        """Return the `WatchReport` of every step recorded so far (``print`` it for the verdict table)."""
        frame = self._frame()
        if frame.empty:
            raise ProbeError(
                "nothing recorded yet: call monitor.step() after each optimizer.step() of a training loop first"
            )
        diagnosis = diagnose_frame(frame, self.thresholds)
        return WatchReport(diagnosis, tuple(rank_fixes(diagnosis)), self._steps)

    def close(self) -> None:
        """Remove every hook from the model; `report()` still works afterwards."""
        self._stack.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def watch(
    model: nn.Module,
    on_alert: OnAlert = "warn",
    *,
    within: int = 50,
    every: int | None = None,
    layers: Iterable[Any] | None = None,
    thresholds: Thresholds = THRESHOLDS,
    grad_scaler: torch.amp.GradScaler | None = None,
) -> Monitor:
    """Return a started `Monitor` on `model`: call ``monitor.step()`` after each ``optimizer.step()``.

    `on_alert`: "warn" (a `GradientWarning`), "raise" (a `GradientAlert`, a GradientflowError
    carrying the diagnosis; the monitor closes first) or a callable receiving the alert. An alert
    comes within `within` steps (default 50) of a problem's first recorded sign. With mixed
    precision pass the loop's `grad_scaler` (and call ``monitor.step()`` after
    ``scaler.step(optimizer)``): gradients are judged unscaled, and skipped steps are not judged. Example::

        monitor = gf.watch(model, on_alert="raise")
        for x, y in batches:
            loss = loss_fn(model(x), y); optimizer.zero_grad(); loss.backward(); optimizer.step()
            monitor.step()
        print(monitor.report())
    """
    return Monitor(model, on_alert, within, every, layers, thresholds, grad_scaler)
