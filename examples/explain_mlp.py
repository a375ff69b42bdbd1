"""A 10-layer sigmoid MLP for `gradientflow explain --model` (the same factory shape as `diagnose`).

    gradientflow explain --model examples/explain_mlp.py:make -o explain-mlp

`make()` returns ``(model, batches)``: PyTorch's default init, 64 inputs, width 64, and 16 fixed
batches of a synthetic 10-class problem (inputs N(0, 1), labels from a random linear teacher), so
it needs no download and is deterministic once torch is seeded (explain seeds it per run).
`relu_mlp` is the same network with ReLU and He init, a model that does not vanish.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

INPUTS, CLASSES, WIDTH, BATCH, DEPTH = 64, 10, 64, 64, 10


def synthetic_batches(count: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` batches of (inputs (64, 64) ~ N(0, 1), labels (64,) of a random linear teacher)."""
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(INPUTS, CLASSES, generator=generator)
    batches = []
    for _ in range(count):
        x = torch.randn(BATCH, INPUTS, generator=generator)  # (batch, inputs)
        batches.append((x, (x @ teacher).argmax(dim=1)))
    return batches


def mlp(activation: type[nn.Module], depth: int = DEPTH) -> nn.Sequential:
    """``fc1, act1, ..., fc<depth>, act<depth>, out`` with PyTorch's default initialization."""
    layers: list[tuple[str, nn.Module]] = []
    features = INPUTS
    for index in range(1, depth + 1):
        layers += [(f"fc{index}", nn.Linear(features, WIDTH)), (f"act{index}", activation())]
        features = WIDTH
    layers.append(("out", nn.Linear(features, CLASSES)))
    return nn.Sequential(OrderedDict(layers))


def make() -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The 10-layer sigmoid MLP and its batches (SGD lr 0.1 and cross-entropy by default)."""
    return mlp(nn.Sigmoid), synthetic_batches()


def relu_mlp() -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The same MLP with ReLU and He init: no vanishing gradient for BN to fix."""
    model = mlp(nn.ReLU)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
    return model, synthetic_batches()
