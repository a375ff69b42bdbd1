"""The probe: per-layer forward and backward statistics of any PyTorch model."""

from .activations import ACTIVATION_NAMES, SaturationRule, activation_name, rule_for_name
from .probe import Probe, tap
from .schedule import at_steps, every

__all__ = [
    "Probe",
    "tap",
    "every",
    "at_steps",
    "ACTIVATION_NAMES",
    "SaturationRule",
    "activation_name",
    "rule_for_name",
]
