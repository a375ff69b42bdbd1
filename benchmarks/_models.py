"""Benchmark fixtures shared by the scripts in this folder (plain PyTorch, fixed seeds)."""

from __future__ import annotations

import torch
from torch import nn


def fig1_mlp() -> nn.Sequential:
    """Return Ioffe & Szegedy's Figure 1 network: 784-100-100-100-10, sigmoid."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(784, 100),
        nn.Sigmoid(),
        nn.Linear(100, 100),
        nn.Sigmoid(),
        nn.Linear(100, 100),
        nn.Sigmoid(),
        nn.Linear(100, 10),
    )


def deep_tanh_mlp(batchnorm: bool, depth: int = 20, width: int = 1024) -> nn.Sequential:
    """Return a `depth`-layer, `width`-wide tanh MLP, with BatchNorm before each tanh if asked."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(784 if i == 0 else width, width))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.Tanh())
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def small_cnn() -> nn.Sequential:
    """Return a 3-conv-layer CNN with BatchNorm and ReLU for 1x28x28 inputs."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
