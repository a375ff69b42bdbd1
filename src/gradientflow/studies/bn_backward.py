"""Claim 9's measurements: what BN's backward pass does to the m gradients of a batch.

Two parts. `autograd_error` checks the numpy backward pass (`theory.batchnorm_backward`) against
torch autograd in float64 on random data. `measure_bn_gradients` trains a BN sigmoid MLP for a few
steps on the study's data and, with hooks on every BatchNorm module, reads the gradient arriving
at BN (dL/dy) and leaving it (dL/dx); it reports their batch means, their component along x_hat and
their per-unit batch std, and checks `theory.decompose_bn_gradient` against the hook's dL/dx.
Nothing is stored: these are seconds of work and the numbers come back as a frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..models import build
from ..runner import load_run_dataset
from ..spec import ExperimentSpec, from_dict
from ..theory import batchnorm_backward, batchnorm_forward, decompose_bn_gradient
from ..train import BatchOrder, make_optimizer

__all__ = ["autograd_error", "bn_backward_spec", "measure_bn_gradients"]


def autograd_error(batch: int = 60, features: int = 20, seed: int = 0) -> float:
    """Max relative error (unitless) of the numpy BN backward pass against autograd, float64.

    Over dL/dx, dL/dgamma and dL/dbeta: max |numpy - autograd| / max |autograd| of each, the worst.
    """
    generator = np.random.default_rng(seed)
    x = generator.normal(1.5, 3.0, (batch, features))  # off-centre and wide: mean and var matter
    gamma, beta = generator.normal(1, 0.5, features), generator.normal(0, 0.5, features)
    grad_y = generator.normal(0.2, 1.0, (batch, features))  # a non-zero batch mean, as in a real net
    _, cache = batchnorm_forward(x, gamma, beta)
    ours = batchnorm_backward(grad_y, cache)
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    y = nn.functional.batch_norm(tx, None, None, tg, tb, training=True, eps=1e-5)
    y.backward(torch.tensor(grad_y))
    reference = tuple(t.grad.numpy() for t in (tx, tg, tb) if t.grad is not None)
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(ours, reference))


def bn_backward_spec(steps: int = 5, seed: int = 0) -> ExperimentSpec:
    """The network of claim 9: 3 x 100 sigmoid MLP with BN before each sigmoid, SGD lr 0.1, batch 60."""
    return from_dict(
        {
            "name": "explain-bn-backward",
            "model": {"depth": 3, "width": 100, "activation": "sigmoid", "norm": "batch"},
            "data": {"name": "mnist5k", "batch_size": 60},
            "optim": {"name": "sgd", "lr": 0.1},
            "train": {"steps": steps, "eval_every": steps, "seed": seed},
        }
    )


def _row(
    layer: str, step: int, x: np.ndarray, grad_y: np.ndarray, grad_x: np.ndarray, gamma: np.ndarray, eps: float
) -> dict[str, Any]:
    parts = decompose_bn_gradient(grad_y, x, gamma, eps)
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)  # (batch, units)

    def mean_ratio(g: np.ndarray) -> float:  # |batch mean| per unit over the gradient's rms
        return float(np.mean(np.abs(g.mean(axis=0))) / np.sqrt(np.mean(g**2)))

    def along(g: np.ndarray) -> float:  # |mean_b(g x_hat)| per unit over the gradient's rms
        return float(np.mean(np.abs((g * x_hat).mean(axis=0))) / np.sqrt(np.mean(g**2)))

    return {
        "layer": layer,
        "step": step,
        "mean_in": mean_ratio(grad_y),
        "mean_out": mean_ratio(grad_x),
        "x_hat_in": along(grad_y),
        "x_hat_out": along(grad_x),
        "std_in": float(grad_y.std(axis=0).mean()),
        "std_out": float(grad_x.std(axis=0).mean()),
        "rms_in": float(np.sqrt(np.mean(grad_y**2))),
        "rms_out": float(np.sqrt(np.mean(grad_x**2))),
        "scale_mean": float(parts.scale.mean()),  # gamma / sigma_B, mean over units
        "decomposition_error": float(np.max(np.abs(parts.grad_x - grad_x)) / np.max(np.abs(grad_x))),
    }


def measure_bn_gradients(steps: int = 5, seed: int = 0) -> pd.DataFrame:
    """Train claim 9's network for `steps` SGD steps; return one row per BN layer and step.

    Columns: layer, step, mean_in/mean_out, x_hat_in/x_hat_out, std_in/std_out, rms_in/rms_out,
    scale_mean, decomposition_error (see `analysis.claim_checks.check_bn_backward`); "in" is the gradient
    arriving at BN from above (dL/dy), "out" the one it passes down (dL/dx).
    """
    spec = bn_backward_spec(steps, seed)
    dataset = load_run_dataset(spec)
    model = build(spec.model, dataset.input_shape, dataset.num_classes, seed)
    model.train()
    optimizer = make_optimizer(spec.optim, list(model.parameters()))
    batches = BatchOrder(dataset.train_x, dataset.train_y, spec.data.batch_size, seed)
    inputs: dict[str, torch.Tensor] = {}
    grads: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def forward_hook(name: str):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            inputs[name] = args[0].detach().clone()  # (batch, units): BN's input x

        return hook

    def backward_hook(name: str):
        def hook(module: nn.Module, grad_input: Any, grad_output: Any) -> None:
            grads[name] = (grad_output[0].detach().clone(), grad_input[0].detach().clone())  # dL/dy, dL/dx

        return hook

    norms = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.BatchNorm1d)]
    handles = []
    rows = []
    try:
        for name, module in norms:
            handles.append(module.register_forward_hook(forward_hook(name)))
            handles.append(module.register_full_backward_hook(backward_hook(name)))
        for step in range(steps):
            x, y = batches.next()
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for name, module in norms:  # gamma as used in this forward pass, before the update
                grad_y, grad_x = (g.double().numpy() for g in grads[name])
                gamma = module.weight.detach().double().numpy()
                rows.append(_row(name, step, inputs[name].double().numpy(), grad_y, grad_x, gamma, module.eps))
            optimizer.step()
    finally:
        for handle in handles:
            handle.remove()
    return pd.DataFrame(rows)
