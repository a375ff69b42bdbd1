"""Pure functions over stored records: gradient-flow profiles, summaries, verdicts."""

from . import claims
from .summary import activation_rows, gradient_ratio, layer_summary, run_summaries

__all__ = ["activation_rows", "claims", "gradient_ratio", "layer_summary", "run_summaries"]
