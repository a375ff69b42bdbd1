"""Pure functions over stored records: gradient-flow profiles, summaries, verdicts."""

from . import claim_checks, claims, intervals, verdicts
from .summary import activation_rows, gradient_ratio, layer_summary, run_summaries
from .verdicts import Diagnosis, Thresholds, diagnose_frame

__all__ = [
    "activation_rows",
    "claim_checks",
    "claims",
    "intervals",
    "gradient_ratio",
    "layer_summary",
    "run_summaries",
    "verdicts",
    "Diagnosis",
    "Thresholds",
    "diagnose_frame",
]
