"""Alerts while a framework trains: `watch`'s verdicts over the most recent records, each problem once."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd

from ..analysis.verdicts import THRESHOLDS, Thresholds
from ..diagnose import GradientAlert, GradientWarning, check_on_alert, new_alerts

__all__ = ["AlertJudge", "OnAlert"]

OnAlert = str | Callable[[GradientAlert], Any] | None


class AlertJudge:
    """A sink that keeps the last `recent` recorded steps and judges them as `watch` does.

    `check()` runs `diagnose_frame` over them and reports each new problem once: a
    `GradientWarning` ("warn"), a raised `GradientAlert` ("raise") or a call of `on_alert`.
    """

    def __init__(self, on_alert: OnAlert, thresholds: Thresholds = THRESHOLDS, recent: int = 30) -> None:
        check_on_alert(on_alert, none_allowed=True)
        self.on_alert, self.thresholds, self.recent = on_alert, thresholds, recent
        self.alerts: list[GradientAlert] = []
        self._alerted: set[str] = set()
        self._frame = pd.DataFrame()
        self._unjudged = False  # rows arrived since the last check

    def __call__(self, stats: pd.DataFrame, histograms: pd.DataFrame | None = None) -> None:
        """Keep a flushed chunk (only the last `recent` recorded steps are held)."""
        frame = stats if self._frame.empty else pd.concat([self._frame, stats], ignore_index=True)
        steps = frame["step"].unique()
        if len(steps) > self.recent:
            frame = frame[frame["step"] >= sorted(steps)[-self.recent]]
        self._frame = frame
        self._unjudged = True

    def check(self) -> None:
        """Alert every problem the recent records show that was not alerted before."""
        frame = self._frame
        if not self._unjudged:
            return
        self._unjudged = False
        for alert in new_alerts(frame, self.thresholds, self._alerted):
            self.alerts.append(alert)
            if self.on_alert == "raise":
                raise alert
            if self.on_alert == "warn":
                warnings.warn(str(alert), GradientWarning, stacklevel=2)
            elif callable(self.on_alert):
                self.on_alert(alert)
