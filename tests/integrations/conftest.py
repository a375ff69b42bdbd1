"""Small models and data for the trainer callbacks; helpers that compare a callback with a plain Probe."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn


def tiny_net() -> nn.Sequential:
    """Linear -> sigmoid -> Linear -> BatchNorm -> ReLU -> Linear, seeded: the same weights on every call."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))


def dead_relu_net() -> nn.Sequential:
    """Three ReLU layers whose biases are -5: almost no unit is ever active ('dead at 1')."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(3):
        linear = nn.Linear(8, 8)
        nn.init.constant_(linear.bias, -5.0)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(8, 2))


def batches(count: int, size: int = 8, features: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` fixed batches of (inputs, class labels)."""
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(size, features, generator=generator), torch.randint(0, 2, (size,), generator=generator))
        for _ in range(count)
    ]


def hook_count(model: nn.Module) -> int:
    """Return how many forward hooks are attached anywhere in `model` (0 once a probe is closed)."""
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def assert_same_rows(got: pd.DataFrame, expected: pd.DataFrame, rtol: float = 1e-6) -> None:
    """Assert two probe frames hold the same rows: identity columns equal, statistics within `rtol`."""
    assert len(got) == len(expected) and len(got) > 0
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), expected.reset_index(drop=True), check_exact=False, rtol=rtol, atol=1e-9
    )
