"""Weight initializations by spec name, drawn from a local generator (global RNG state is untouched)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import nn

from gradientflow.errors import ModelError
from gradientflow.spec import ModelSpec

__all__ = ["INITS", "fan_in", "initialize"]

InitFunction = Callable[[torch.Tensor, ModelSpec, torch.Generator], None]

#: Modules whose weight an init draws; everything else with parameters must reset deterministically.
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def fan_in(weight: torch.Tensor) -> int:
    """Inputs feeding one output unit: in_features, or in_channels * kernel area for a conv."""
    return weight.shape[1] * math.prod(weight.shape[2:])


def _pytorch_default(weight: torch.Tensor, spec: ModelSpec, generator: torch.Generator) -> None:
    # What nn.Linear/nn.Conv reset_parameters draw, from our generator instead of the global one.
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)


def _small_gaussian(weight: torch.Tensor, spec: ModelSpec, generator: torch.Generator) -> None:
    nn.init.normal_(weight, 0.0, spec.init_std, generator=generator)


def _glorot_uniform(weight: torch.Tensor, spec: ModelSpec, generator: torch.Generator) -> None:
    nn.init.xavier_uniform_(weight, generator=generator)


def _glorot_normal(weight: torch.Tensor, spec: ModelSpec, generator: torch.Generator) -> None:
    nn.init.xavier_normal_(weight, generator=generator)


def _he_normal(weight: torch.Tensor, spec: ModelSpec, generator: torch.Generator) -> None:
    nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu", generator=generator)


def _lecun_normal(weight: torch.Tensor, spec: ModelSpec, generator: torch.Generator) -> None:
    nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in(weight)), generator=generator)


def _orthogonal(weight: torch.Tensor, spec: ModelSpec, generator: torch.Generator) -> None:
    nn.init.orthogonal_(weight, generator=generator)


def _standard_uniform(weight: torch.Tensor, spec: ModelSpec, generator: torch.Generator) -> None:
    # Glorot & Bengio (2010)'s "commonly used heuristic", eq. 1: U[-1/sqrt(n), 1/sqrt(n)], n = fan-in.
    bound = 1.0 / math.sqrt(fan_in(weight))
    nn.init.uniform_(weight, -bound, bound, generator=generator)


#: spec name -> function(weight, spec, generator) filling `weight` in place.
INITS: dict[str, InitFunction] = {
    "pytorch_default": _pytorch_default,
    "small_gaussian": _small_gaussian,
    "glorot_uniform": _glorot_uniform,
    "glorot_normal": _glorot_normal,
    "he_normal": _he_normal,
    "lecun_normal": _lecun_normal,
    "orthogonal": _orthogonal,
    "standard_uniform": _standard_uniform,
}


@torch.no_grad()
def initialize(model: nn.Module, spec: ModelSpec, seed: int) -> nn.Module:
    """Initialize every parameter and buffer of `model` in place, reproducibly from `seed`; returns it.

    Linear/Conv weights are drawn by ``INITS[spec.init]`` in module order from one local generator,
    then multiplied by ``spec.weight_scale``; biases are set to ``spec.bias_init``. Norm layers reset
    to their deterministic defaults and draw nothing, so the weights of a net are the same with and
    without normalization layers. Any other module holding parameters is refused (ModelError).
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    init = INITS[spec.init]
    for name, module in model.named_modules():
        if isinstance(module, WEIGHTED):
            # Draw on CPU then copy: the same numbers whatever device the model is on.
            weight = torch.empty(module.weight.shape, dtype=module.weight.dtype)
            init(weight, spec, generator)
            module.weight.copy_(weight * spec.weight_scale)
            if module.bias is not None:
                module.bias.fill_(spec.bias_init)
        elif isinstance(module, NORM_TYPES):
            module.reset_parameters()  # ones, zeros, running statistics: no randomness
        elif any(True for _ in itertools.chain(module.parameters(False), module.buffers(False))):
            raise ModelError(
                f"cannot initialize module {name!r} ({type(module).__name__}): it holds parameters or "
                "buffers but is neither Linear/Conv nor a normalization layer"
            )
    return model
