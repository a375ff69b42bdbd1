"""Where the probe keeps its statistics: on the model's device, followed when the model moves.

The buffer is made when the probe is built, but a model is often moved afterwards
(``Probe(model)`` then ``model.cuda()``, or a Lightning/HF trainer placing it). The probe looks
at the model's device when a recorded step is computed and moves its buffers there if it changed,
so that statistics are written where they are computed (a write across devices would copy every
value through the host).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["module_device"]


def module_device(model: nn.Module, hint: nn.Module | None = None) -> torch.device:
    """Return the device of `hint`'s weight when it has one (a dictionary lookup: this runs on every
    recorded step), else of `model`'s first parameter or buffer; the CPU for a model without either."""
    if hint is not None:
        weight = hint._parameters.get("weight")
        if weight is not None:
            return weight.device
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")
