"""The probe: per-layer forward and backward statistics of any PyTorch model."""

from .activations import (
    ACTIVATION_NAMES,
    SaturationRule,
    activation_name,
    is_norm,
    register_activation,
    register_norm,
    rule_for_name,
)
from .probe import NoActivationWarning, Probe, tap
from .schedule import at_steps, every

__all__ = [
    "Probe",
    "tap",
    "every",
    "at_steps",
    "register_activation",
    "register_norm",
    "NoActivationWarning",
    "ACTIVATION_NAMES",
    "SaturationRule",
    "activation_name",
    "is_norm",
    "rule_for_name",
]
