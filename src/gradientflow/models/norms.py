"""Normalization modules by spec name, for feature vectors (mlp) and feature maps (cnn)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gradientflow.spec import ModelSpec

__all__ = ["NORMS", "NORM_PREFIXES", "ChannelLayerNorm", "ChannelRMSNorm", "group_count"]

#: Short prefixes for module names: fc1, bn1, act1 read well in per-layer tables.
NORM_PREFIXES: dict[str, str] = {"batch": "bn", "layer": "ln", "group": "gn", "rms": "rms"}


def _channels_last(norm: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    # (batch, channels, height, width) -> normalize over channels at each position -> back
    return norm(x.movedim(1, -1)).movedim(-1, 1)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each position of a (batch, channels, height, width) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _channels_last(super().forward, x)


class ChannelRMSNorm(nn.RMSNorm):
    """RMSNorm over the channels of each position of a (batch, channels, height, width) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _channels_last(super().forward, x)


def group_count(groups: int, channels: int) -> int:
    """The largest divisor of `channels` not above `groups` (GroupNorm needs groups | channels).

    Example: group_count(8, 100) == 5, group_count(8, 4) == 4.
    """
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


def _batch(features: int, spec: ModelSpec, spatial: bool) -> nn.Module:
    return nn.BatchNorm2d(features) if spatial else nn.BatchNorm1d(features)


def _layer(features: int, spec: ModelSpec, spatial: bool) -> nn.Module:
    return ChannelLayerNorm(features) if spatial else nn.LayerNorm(features)


def _group(features: int, spec: ModelSpec, spatial: bool) -> nn.Module:
    return nn.GroupNorm(group_count(spec.groups, features), features)


def _rms(features: int, spec: ModelSpec, spatial: bool) -> nn.Module:
    return ChannelRMSNorm(features) if spatial else nn.RMSNorm(features)


NormFactory = Callable[[int, ModelSpec, bool], "nn.Module | None"]

#: spec name -> factory(features, spec, spatial) of a fresh module, or None for "none".
NORMS: dict[str, NormFactory] = {
    "none": lambda features, spec, spatial: None,
    "batch": _batch,
    "layer": _layer,
    "group": _group,
    "rms": _rms,
}
