"""The BatchNorm row of the probe's table: what BN saw in its input and what it holds."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["BN_COLUMNS", "batchnorm_row"]

BN_COLUMNS = ("bn_input_mean", "bn_input_var", "bn_gamma_norm", "bn_beta_norm", "bn_running_mean_norm", "bn_running_var_mean")


def batchnorm_row(module: nn.Module, moments: torch.Tensor) -> torch.Tensor:
    """``(1, len(BN_COLUMNS))``: input batch mean and variance (from `moments`), |gamma|, |beta|,
    |running mean|, mean running variance; NaN for what the module does not have."""
    parts = [getattr(module, name, None) for name in ("weight", "bias", "running_mean", "running_var")]
    if moments.device.type == "cpu":  # numpy: a few microseconds instead of a dispatch per value
        weight, bias, running_mean, running_var = [p.detach().numpy() if p is not None else None for p in parts]
        row = [
            *moments.tolist(),
            *(float(np.linalg.norm(v)) if v is not None else math.nan for v in (weight, bias, running_mean)),
            float(running_var.mean()) if running_var is not None else math.nan,
        ]
        return torch.tensor([row], dtype=torch.float32)
    nan = moments.new_tensor(math.nan)
    weight, bias, running_mean, running_var = [p.detach() if p is not None else None for p in parts]
    norms = [torch.linalg.vector_norm(v) if v is not None else nan for v in (weight, bias, running_mean)]
    return torch.stack((moments[0], moments[1], *norms, running_var.mean() if running_var is not None else nan)).unsqueeze(0)
