"""Glorot & Bengio (2010), Figure 2: activations traced over training, and the layer-to-layer Jacobians."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ....data import load_dataset
from ....models import build
from ....spec import ExperimentSpec
from ....train import BatchOrder, evaluate, make_optimizer
from .settings import (
    EXAMPLES,
    checkpoints,
)

__all__ = ["Trace", "activation_trace", "jacobian_singular_values"]


@dataclass(frozen=True)
class Trace:
    """Activation statistics of one variant over training: `mean` and `std` have shape
    (checkpoints, layers), over the 300 test examples and all units (sigmoid output units)."""

    variant: str
    steps: list[int]
    mean: np.ndarray
    std: np.ndarray
    test_accuracy: float
    seconds: float


def _activation_modules(model: nn.Module) -> list[nn.Module]:
    return [module for name, module in model.named_modules() if name.startswith("act")]


@torch.no_grad()
def _layer_outputs(model: nn.Module, x: torch.Tensor, inputs: bool = False) -> list[torch.Tensor]:
    """Each activation module's output (or input) on `x`, with the model in eval mode (BN uses its
    running statistics, as at test time)."""
    captured: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: captured.append((i[0] if inputs else o).detach()))
        for m in _activation_modules(model)
    ]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return captured


def activation_trace(spec: ExperimentSpec, variant: str, data_dir: str | None, count: int) -> Trace:
    """Train `spec` and return its hidden layers' activation mean/std on 300 fixed test examples at
    `checkpoints(steps, count)`; deterministic for a given spec (seeded init and batch order)."""
    start = time.perf_counter()
    dataset = load_dataset(spec.data.name, data_dir=data_dir, seed=spec.train.seed)
    model = build(spec.model, dataset.input_shape, dataset.num_classes, spec.train.seed)
    optimizer = make_optimizer(spec.optim, list(model.parameters()))
    batches = BatchOrder(dataset.train_x, dataset.train_y, spec.data.batch_size, spec.train.seed)
    fixed = dataset.test_x[:EXAMPLES]
    wanted = checkpoints(spec.train.steps, count)
    means, stds = [], []
    for step in range(spec.train.steps + 1):
        if step in wanted:
            outputs = _layer_outputs(model, fixed)
            means.append([float(o.mean()) for o in outputs])
            stds.append([float(o.std()) for o in outputs])
        if step == spec.train.steps:
            break
        x, y = batches.next()
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _, accuracy = evaluate(model, dataset.test_x, dataset.test_y, 1000)
    return Trace(variant, wanted, np.asarray(means), np.asarray(stds), accuracy, time.perf_counter() - start)


def jacobian_singular_values(spec: ExperimentSpec, examples: int, data_dir: str | None = None) -> np.ndarray:
    """Mean singular value of each hidden-to-hidden Jacobian dz_{i+1}/dz_i = diag(phi'(s_{i+1})) W_{i+1}
    at initialization, averaged over the first `examples` test examples; shape (depth - 1,), unitless."""
    dataset = load_dataset(spec.data.name, data_dir=data_dir, seed=spec.train.seed)
    model = build(spec.model, dataset.input_shape, dataset.num_classes, spec.train.seed)
    pre = _layer_outputs(model, dataset.test_x[:examples], inputs=True)  # pre-activations, (examples, width) each
    weights = [m.weight.detach().double() for n, m in model.named_modules() if n.startswith("fc")]
    slope = {"tanh": lambda s: 1 - torch.tanh(s) ** 2, "sigmoid": lambda s: torch.sigmoid(s) * (1 - torch.sigmoid(s))}[
        spec.model.activation
    ]
    values = np.zeros(len(weights) - 1)
    for layer in range(1, len(weights)):
        for example in range(examples):
            jacobian = slope(pre[layer][example].double())[:, None] * weights[layer]  # (width, width)
            # Singular values from the symmetric J J^T: eigvalsh is several times faster than an SVD.
            squares = torch.linalg.eigvalsh(jacobian @ jacobian.T).clamp(min=0)
            values[layer - 1] += float(squares.sqrt().mean()) / examples
    return values
