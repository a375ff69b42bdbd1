"""Pure functions over stored records: gradient-flow profiles, summaries, verdicts."""

from . import claims, verdicts
from .summary import activation_rows, gradient_ratio, layer_summary, run_summaries
from .verdicts import Diagnosis, Thresholds, diagnose_frame

__all__ = [
    "activation_rows",
    "claims",
    "gradient_ratio",
    "layer_summary",
    "run_summaries",
    "verdicts",
    "Diagnosis",
    "Thresholds",
    "diagnose_frame",
]
