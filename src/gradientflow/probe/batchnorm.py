"""The BatchNorm row of the probe's table: what BN saw in its input and what it holds."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch
from torch import nn

__all__ = [
    "BN_COLUMNS",
    "batchnorm_row",
    "batch_statistics",
    "saved_batch_statistics",
    "pooled_moments",
    "pooled_unit_moments",
    "Moments",
]

BN_COLUMNS = (
    "bn_input_mean",
    "bn_input_var",
    "bn_gamma_norm",
    "bn_beta_norm",
    "bn_running_mean_norm",
    "bn_running_var_mean",
)


Moments = tuple[int, "np.ndarray | torch.Tensor", "np.ndarray | torch.Tensor"]


def batchnorm_row(module: nn.Module, moments: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(1, len(BN_COLUMNS))``: input batch mean and variance (from `moments`), |gamma|, |beta|,
    |running mean|, mean running variance; NaN for what the module does not have.

    On the CPU the row is built in numpy; elsewhere it stays on the module's device (no host sync:
    the values reach the host with the rest of the buffer at the flush)."""
    parts = [getattr(module, name, None) for name in ("weight", "bias", "running_mean", "running_var")]
    on_cpu = isinstance(moments, np.ndarray) or moments.device.type == "cpu"
    if on_cpu and all(p is None or p.device.type == "cpu" for p in parts):
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
    return _row_on_device(parts, moments)


def _row_on_device(parts: list[torch.Tensor | None], moments: torch.Tensor | np.ndarray) -> torch.Tensor:
    """`batchnorm_row` with torch ops on the parameters' device (weight, bias, running mean and
    variance, any None): nothing is copied to the host."""
    device = next((p.device for p in parts if p is not None), None) or torch.device("cpu")
    if isinstance(moments, np.ndarray):
        moments = torch.from_numpy(moments)
    moments = moments.to(device, torch.float32)
    nan = torch.full((), math.nan, device=device)  # a fill, not a copy from the host
    weight, bias, running_mean, running_var = [p.detach().float() if p is not None else None for p in parts]
    norms = [torch.linalg.vector_norm(v) if v is not None else nan for v in (weight, bias, running_mean)]
    return torch.stack(
        (moments[0], moments[1], *norms, running_var.mean() if running_var is not None else nan)
    ).unsqueeze(0)


def batch_statistics(x: torch.Tensor, output: object) -> Moments:
    """Return (examples per unit, per-unit batch means, per-unit biased variances) of BatchNorm's
    input `x` (units along dimension 1): from what BN saved for its backward when it did (see
    `saved_batch_statistics`), else from one float64 pass over `x` (eval mode). Float64; numpy on
    the CPU, tensors on `x`'s device elsewhere (kept there until the flush)."""
    units = x.shape[1] if x.dim() > 1 else 1
    saved = saved_batch_statistics(output) if isinstance(output, torch.Tensor) else None
    if saved is not None:
        return (x.numel() // max(units, 1), *saved)
    cells = x.detach().transpose(0, 1).reshape(units, -1).double()
    return cells.shape[1], _float64(cells.mean(dim=1)), _float64(cells.var(dim=1, unbiased=False))


def saved_batch_statistics(
    output: torch.Tensor,
) -> tuple[np.ndarray, np.ndarray] | tuple[torch.Tensor, torch.Tensor] | None:
    """Return BatchNorm's own per-unit batch mean and (biased) variance, float64 (numpy on the CPU,
    tensors on the device elsewhere), read from what its autograd node saved for the backward
    pass, or None when it saved none (eval mode, no gradient, or a backend that saves something else).

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
    inverse = _float64(invstd)
    if isinstance(inverse, torch.Tensor):
        return _float64(mean), (1.0 / inverse**2 - float(eps)).clamp(min=0.0)  # type: ignore[return-value]
    with np.errstate(divide="ignore"):
        variance = np.clip(1.0 / inverse**2 - float(eps), 0.0, None)
    return _float64(mean), variance  # type: ignore[return-value]


def _float64(t: torch.Tensor) -> np.ndarray | torch.Tensor:
    # on the CPU numpy's float64 cast, not torch's: one dispatch less per call, on every recorded
    # step; on an accelerator the values stay there (a copy to the host would sync every BN layer)
    t = t.detach()
    return t.numpy().astype(np.float64) if t.is_cpu else t.double()


def pooled_unit_moments(calls: list[Moments]) -> Moments:
    """Return (examples per unit, per-unit mean, per-unit biased variance) over all the examples of
    `calls`: the `batch_statistics` of each forward call of one step, pooled as one batch."""
    if len(calls) == 1:
        return calls[0]
    total = sum(count for count, _, _ in calls)  # examples per unit, all calls
    mean: Any = sum(count * m for count, m, _ in calls) / total
    variance: Any = sum(count * (v + m**2) for count, m, v in calls) / total - mean**2
    return (
        total,
        mean,
        (variance.clamp(min=0.0) if isinstance(variance, torch.Tensor) else np.clip(variance, 0.0, None)),
    )


def pooled_moments(calls: list[Moments]) -> np.ndarray | torch.Tensor:
    """``(2,)`` float64: the mean over units of each unit's mean, and of each unit's (biased)
    variance, over all the examples of `calls` (see `pooled_unit_moments`). Numpy when the calls'
    moments are, else a tensor on their device."""
    _, mean, variance = pooled_unit_moments(calls)
    if isinstance(mean, torch.Tensor):
        return torch.stack((mean.mean(), variance.mean()))
    # the variance is numpy too: one call's moments are all numpy or all tensors
    return np.array([mean.sum() / mean.size, variance.sum() / cast(np.ndarray, variance).size])
