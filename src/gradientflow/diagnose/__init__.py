"""Diagnose a user's own model: per-layer verdicts, the first layer where the gradient collapses or
blows up, its likely cause, ranked fixes, and alerts while training (`watch`)."""

from ..analysis.verdicts import PROBLEMS, THRESHOLDS, VERDICTS, Diagnosis, Problem, Thresholds, diagnose_frame
from .factory import FactoryError, Setup, call_factory, load_factory
from .fixes import Fix, apply_fix, rank_fixes, why_not_applied
from .guard import DiagnoseTimeout, Guard
from .report import DiagnoseReport, TriedFix, UntriedFix, format_report, format_table
from .run import DEFAULT_STEPS, diagnose
from .session import Trace, diagnose_schedule, diagnose_setup, train_and_probe
from .watch import GradientAlert, GradientWarning, Monitor, WatchReport, check_on_alert, new_alerts, watch

__all__ = [
    "diagnose",
    "watch",
    "Monitor",
    "WatchReport",
    "GradientAlert",
    "GradientWarning",
    "new_alerts",
    "check_on_alert",
    "DiagnoseReport",
    "TriedFix",
    "UntriedFix",
    "Diagnosis",
    "Problem",
    "Thresholds",
    "THRESHOLDS",
    "PROBLEMS",
    "VERDICTS",
    "Fix",
    "FactoryError",
    "DiagnoseTimeout",
    "Guard",
    "Setup",
    "Trace",
    "DEFAULT_STEPS",
    "apply_fix",
    "call_factory",
    "diagnose_frame",
    "diagnose_schedule",
    "diagnose_setup",
    "format_report",
    "format_table",
    "load_factory",
    "rank_fixes",
    "why_not_applied",
    "train_and_probe",
]
