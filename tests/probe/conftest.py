"""Tiny fixture models with fixed weights, one per edge case."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def fixed_mlp(activation: nn.Module | None = None, inplace_relu: bool = False) -> nn.Sequential:
    """Return a 6-12-12-3 MLP with deterministic weights (seed 0) and the given middle activation."""
    torch.manual_seed(0)
    second = activation if activation is not None else (nn.ReLU(inplace=True) if inplace_relu else nn.ReLU())
    return nn.Sequential(nn.Linear(6, 12), nn.Sigmoid(), nn.Linear(12, 12), second, nn.Linear(12, 3))


def train_steps(
    model: nn.Module, probe, steps: int = 3, seed: int = 1, batch: int = 8, lr: float = 0.1
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run `steps` SGD steps on fixed random batches, calling probe.step(); return the batches."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    batches = []
    for _ in range(steps):
        x = torch.randn(batch, 6, generator=generator)
        y = torch.randint(0, 3, (batch,), generator=generator)
        batches.append((x, y))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if probe is not None:
            probe.step()
    return batches


@pytest.fixture
def mlp() -> nn.Sequential:
    return fixed_mlp()
