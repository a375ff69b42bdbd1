"""Networks built from a `ModelSpec`, and the registries behind them.

Layer 3: torch, `gradientflow.spec` and `gradientflow.errors` only (never probe or data).
The registries' keys are exactly the names `gradientflow.spec` accepts.
"""

from gradientflow.models.activations import ACTIVATIONS, LinearActivation
from gradientflow.models.build import build, cnn, mlp
from gradientflow.models.inits import INITS, fan_in, initialize
from gradientflow.models.norms import (
    NORM_PREFIXES,
    NORMS,
    ChannelLayerNorm,
    ChannelRMSNorm,
    group_count,
)

__all__ = [
    "build",
    "mlp",
    "cnn",
    "initialize",
    "fan_in",
    "group_count",
    "ACTIVATIONS",
    "NORMS",
    "NORM_PREFIXES",
    "INITS",
    "LinearActivation",
    "ChannelLayerNorm",
    "ChannelRMSNorm",
]
