"""The BatchNorm row of the probe's table: what BN saw in its input and what it holds."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["BN_COLUMNS", "batchnorm_row", "batch_statistics", "saved_batch_statistics", "pooled_moments"]

BN_COLUMNS = (
    "bn_input_mean",
    "bn_input_var",
    "bn_gamma_norm",
    "bn_beta_norm",
    "bn_running_mean_norm",
    "bn_running_var_mean",
)


def batchnorm_row(module: nn.Module, moments: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(1, len(BN_COLUMNS))``: input batch mean and variance (from `moments`), |gamma|, |beta|,
    |running mean|, mean running variance; NaN for what the module does not have."""
    parts = [getattr(module, name, None) for name in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(moments, np.ndarray) or moments.device.type == "cpu":
        # numpy: a few microseconds instead of a dispatch per value (and torch.tensor(list) alone costs tens)
        weight, bias, running_mean, running_var = [p.detach().numpy() if p is not None else None for p in parts]
        row = np.full((1, len(BN_COLUMNS)), math.nan, dtype=np.float32)
        row[0, :2] = moments.numpy() if isinstance(moments, torch.Tensor) else moments
        for column, values in enumerate((weight, bias, running_mean), start=2):
            if values is not None:
                row[0, column] = math.sqrt(float(np.dot(values, values)))
        if running_var is not None:
            row[0, 5] = float(running_var.sum()) / running_var.size
        return torch.from_numpy(row)
    nan = moments.new_tensor(math.nan)
    weight, bias, running_mean, running_var = [p.detach() if p is not None else None for p in parts]
    norms = [torch.linalg.vector_norm(v) if v is not None else nan for v in (weight, bias, running_mean)]
    return torch.stack(
        (moments[0], moments[1], *norms, running_var.mean() if running_var is not None else nan)
    ).unsqueeze(0)


def batch_statistics(x: torch.Tensor, output: object) -> tuple[int, np.ndarray, np.ndarray]:
    """Return (examples per unit, per-unit batch means, per-unit biased variances) of BatchNorm's
    input `x` (units along dimension 1): from what BN saved for its backward when it did (see
    `saved_batch_statistics`), else from one float64 pass over `x` (eval mode)."""
    units = x.shape[1] if x.dim() > 1 else 1
    saved = saved_batch_statistics(output) if isinstance(output, torch.Tensor) else None
    if saved is not None:
        return (x.numel() // max(units, 1), *saved)
    cells = x.detach().transpose(0, 1).reshape(units, -1).double()
    return cells.shape[1], _on_host(cells.mean(dim=1)), _on_host(cells.var(dim=1, unbiased=False))


def saved_batch_statistics(output: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """Return BatchNorm's own per-unit batch mean and (biased) variance, float64 numpy, read from
    what its autograd node saved for the backward pass, or None when it saved none (eval mode,
    no gradient, or a backend that saves something else).

    This is what BN normalised with, at no cost: reading the input again would be one more pass
    over the largest tensors of a convolutional network. The variance is 1/invstd^2 - eps, so it
    is resolved to about 1e-7 of (variance + eps), and clipped at 0.
    """
    node = output.grad_fn
    try:
        if not node._saved_training:  # type: ignore[union-attr]
            return None
        mean, invstd, eps = node._saved_result1, node._saved_result2, node._saved_eps  # type: ignore[union-attr]
    except AttributeError:
        return None
    if mean.dim() != 1 or invstd.shape != mean.shape or mean.numel() == 0:
        return None
    invstd = _on_host(invstd)
    with np.errstate(divide="ignore"):
        variance = np.clip(1.0 / invstd**2 - float(eps), 0.0, None)
    return _on_host(mean), variance


def _on_host(t: torch.Tensor) -> np.ndarray:
    # numpy's float64 cast, not torch's: one dispatch less per call, on every recorded step
    t = t.detach()
    return (t if t.is_cpu else t.cpu()).numpy().astype(np.float64)


def pooled_moments(calls: list[tuple[int, np.ndarray, np.ndarray]]) -> np.ndarray:
    """``(2,)`` float64: the mean over units of each unit's mean, and of each unit's (biased)
    variance, over all the examples of `calls`: (examples per unit, per-unit means, per-unit
    variances) of each forward call of one step, pooled as one batch."""
    if len(calls) == 1:
        _, mean, variance = calls[0]
    else:
        total = sum(count for count, _, _ in calls)
        mean = sum(count * m for count, m, _ in calls) / total
        variance = np.clip(sum(count * (v + m**2) for count, m, v in calls) / total - mean**2, 0.0, None)
    return np.array([mean.sum() / mean.size, variance.sum() / variance.size])
