"""Build the networks a spec describes: an MLP or a small CNN with named submodules."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from gradientflow.errors import ModelError
from gradientflow.models.activations import ACTIVATIONS
from gradientflow.models.inits import initialize
from gradientflow.models.norms import NORM_PREFIXES, NORMS
from gradientflow.spec import ModelSpec

__all__ = ["build", "mlp", "cnn"]


def build(model_spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """The network `model_spec` describes, on the CPU, initialized reproducibly from `seed`.

    `input_shape` is one example's shape without the batch dimension, e.g. (1, 28, 28) or (784,);
    the output is (batch, num_classes) logits. Global RNG state is never touched: modules are
    created on the meta device and every parameter is then drawn from a local generator, so the
    same seed gives the same weights with or without normalization layers. Example::

        net = build(ModelSpec(depth=5, norm="batch"), (1, 28, 28), 10, seed=0)
    """
    input_shape = tuple(input_shape)
    if not input_shape or any(not isinstance(n, int) or n < 1 for n in input_shape):
        raise ModelError(f"input_shape must be positive integers (without the batch), got {input_shape}")
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes}")
    builders = {"mlp": mlp, "cnn": cnn}
    with torch.device("meta"):  # no storage and no random draws until `initialize`
        model = builders[model_spec.arch](model_spec, input_shape, num_classes)
    model.to_empty(device="cpu")
    return initialize(model, model_spec, seed)


def _norm_and_activation(spec: ModelSpec, features: int, index: int, spatial: bool) -> list[tuple[str, nn.Module]]:
    norm = NORMS[spec.norm](features, spec, spatial)
    layers = [(f"act{index}", ACTIVATIONS[spec.activation]())]
    if norm is not None:
        named_norm = (f"{NORM_PREFIXES[spec.norm]}{index}", norm)
        before = spec.norm_position == "before_activation"
        layers = [named_norm, *layers] if before else [*layers, named_norm]
    return layers


def mlp(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """flatten, then `depth` x (fc, norm, act) or (fc, act, norm), then out; not initialized."""
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    features = math.prod(input_shape)
    for index in range(1, spec.depth + 1):
        layers.append((f"fc{index}", nn.Linear(features, spec.width, bias=spec.bias)))
        layers.extend(_norm_and_activation(spec, spec.width, index, spatial=False))
        features = spec.width
    layers.append(("out", nn.Linear(features, num_classes)))
    return nn.Sequential(OrderedDict(layers))


def cnn(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Per entry of `channels`: conv (same padding), norm/act, 2x2 max pool; then gap, flatten, out."""
    if len(input_shape) != 3:
        raise ModelError(
            f"arch 'cnn' needs image input shaped (channels, height, width), got input_shape {input_shape}"
        )
    in_channels, height, width = input_shape
    blocks = len(spec.channels)
    if min(height, width) >> blocks < 1:
        raise ModelError(
            f"arch 'cnn' with {blocks} conv blocks halves a {height}x{width} input {blocks} times to "
            f"{height >> blocks}x{width >> blocks}; use at most {min(height, width).bit_length() - 1} "
            "entries in model.channels"
        )
    layers: list[tuple[str, nn.Module]] = []
    for index, channels in enumerate(spec.channels, start=1):
        conv = nn.Conv2d(in_channels, channels, spec.kernel_size, padding="same", bias=spec.bias)
        layers.append((f"conv{index}", conv))
        layers.extend(_norm_and_activation(spec, channels, index, spatial=True))
        layers.append((f"pool{index}", nn.MaxPool2d(2)))
        in_channels = channels
    layers += [("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
    layers.append(("out", nn.Linear(in_channels, num_classes)))
    return nn.Sequential(OrderedDict(layers))
