"""K same-shaped MLPs trained as one model: every parameter carries a leading member dimension.

One batched matrix product (``baddbmm``) per layer serves all members, so a step of K small
networks costs a few dozen tensor ops instead of K times that; per-op dispatch, not arithmetic,
is what one small network spends its time on. BatchNorm keeps per-member statistics: the members'
features sit side by side as channels of one ``(batch, members * features)`` BatchNorm call.

Members are built by `build` as usual and stacked, so initial weights (and every init option)
are exactly those of a run trained alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from gradientflow.errors import ModelError

__all__ = ["EnsembleLayer", "EnsembleMLP", "stack_members"]


@dataclass(frozen=True)
class EnsembleLayer:
    """One named layer of the members' `nn.Sequential`, as the probe sees it."""

    name: str  # qualified name in a member (fc1, bn1, act1, ..., out)
    kind: str  # "linear", "batch" or "activation"
    module_type: str  # the member module's class name (Linear, BatchNorm1d, Sigmoid, ...)
    index: int  # position among the layers of its kind (weights, norms or activations)


class EnsembleMLP(nn.Module):
    """`members` MLPs of identical structure; parameters shaped ``(members, ...)``.

    Linear weights are stored transposed, ``(members, in, out)``, so that ``x @ W`` is one
    ``baddbmm`` over ``(members, batch, in)`` inputs; biases are ``(members, 1, out)``.
    """

    def __init__(
        self,
        layers: list[EnsembleLayer],
        weights: list[torch.Tensor],
        biases: list[torch.Tensor | None],
        norms: list[tuple[torch.Tensor, ...]],
        activations: list[nn.Module],
        bn_eps: float,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        self.layers = layers
        self.weights = nn.ParameterList([nn.Parameter(w) for w in weights])  # (members, in, out)
        self.biases = [None if b is None else nn.Parameter(b) for b in biases]  # (members, 1, out)
        for i, b in enumerate(self.biases):
            if b is not None:
                self.register_parameter(f"bias{i}", b)
        self.gammas = nn.ParameterList([nn.Parameter(n[0]) for n in norms])  # (members, features)
        self.betas = nn.ParameterList([nn.Parameter(n[1]) for n in norms])  # (members, features)
        for i, n in enumerate(norms):
            self.register_buffer(f"running_mean{i}", n[2])  # (members, features)
            self.register_buffer(f"running_var{i}", n[3])  # (members, features)
        self.activations = nn.ModuleList(activations)
        self.bn_eps, self.bn_momentum = bn_eps, bn_momentum

    @property
    def members(self) -> int:
        """Return the number of members now in the ensemble."""
        return int(self.weights[0].shape[0])

    def running_stats(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return BatchNorm `index`'s (running_mean, running_var), each ``(members, features)``."""
        return getattr(self, f"running_mean{index}"), getattr(self, f"running_var{index}")

    def parameter_list(self) -> list[nn.Parameter]:
        """Return every trained parameter in a fixed order: weights, biases, gammas, betas."""
        biases = [b for b in self.biases if b is not None]
        return [*self.weights, *biases, *self.gammas, *self.betas]

    def forward(
        self, x: torch.Tensor, capture: bool = False, shared_input: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return (logits ``(members, batch, classes)``, captured tensors by layer name).

        `x` is ``(members, batch, ...)``, or ``(batch, ...)`` seen by every member when
        `shared_input`. With `capture`, the result maps each activation layer's name to its
        input (the pre-activation) and each BatchNorm layer's name to its input, both
        ``(members, batch, features)``, still attached to the graph.
        """
        members = self.members
        captured: dict[str, torch.Tensor] = {}
        if shared_input:
            h = x.reshape(x.shape[0], -1)  # (batch, in)
        else:
            h = x.reshape(members, x.shape[1], -1)  # (members, batch, in)
        for layer in self.layers:
            if layer.kind == "linear":
                h = self._linear(layer.index, h, shared_input and layer.index == 0)
            elif layer.kind == "batch":
                if capture:
                    captured[layer.name] = h
                h = self._batch_norm(layer.index, h)
            else:
                if capture:
                    captured[layer.name] = h
                h = self.activations[layer.index](h)
        return h, captured

    def _linear(self, index: int, h: torch.Tensor, shared: bool) -> torch.Tensor:
        weight, bias = self.weights[index], self.biases[index]
        if shared:
            # one (batch, in) x (in, members * out) product instead of copying the input per member
            members, fan_in, fan_out = weight.shape
            flat = weight.permute(1, 0, 2).reshape(fan_in, members * fan_out)  # (in, members * out)
            out = (h @ flat).view(h.shape[0], members, fan_out).transpose(0, 1)  # (members, batch, out)
            return out if bias is None else out + bias
        if bias is None:
            return torch.bmm(h, weight)  # (members, batch, out)
        return torch.baddbmm(bias, h, weight)  # (members, batch, out)

    def _batch_norm(self, index: int, h: torch.Tensor) -> torch.Tensor:
        members, batch, features = h.shape
        running_mean, running_var = self.running_stats(index)
        # members' features as channels of one BatchNorm: per-member, per-unit batch statistics
        side_by_side = h.transpose(0, 1).reshape(batch, members * features)  # (batch, members * features)
        out = F.batch_norm(
            side_by_side,
            running_mean.view(-1),
            running_var.view(-1),
            self.gammas[index].reshape(-1),
            self.betas[index].reshape(-1),
            training=self.training,
            momentum=self.bn_momentum,
            eps=self.bn_eps,
        )
        return out.view(batch, members, features).transpose(0, 1)  # (members, batch, features)

    @torch.no_grad()
    def keep(self, members: Sequence[int]) -> None:
        """Keep only the members at positions `members` (in that order), e.g. after some diverged."""
        index = torch.as_tensor(list(members), dtype=torch.long)
        for parameter in self.parameter_list():
            parameter.data = parameter.data.index_select(0, index)
        for name, buffer in list(self.named_buffers()):
            setattr(self, name, buffer.index_select(0, index))

    @torch.no_grad()
    def member_parameters(self, member: int) -> dict[str, torch.Tensor]:
        """Return member `member`'s parameters and buffers under its own module's state-dict names."""
        state: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            if layer.kind == "linear":
                state[f"{layer.name}.weight"] = self.weights[layer.index][member].T.clone()
                bias = self.biases[layer.index]
                if bias is not None:
                    state[f"{layer.name}.bias"] = bias[member, 0].clone()
            elif layer.kind == "batch":
                running_mean, running_var = self.running_stats(layer.index)
                state[f"{layer.name}.weight"] = self.gammas[layer.index][member].clone()
                state[f"{layer.name}.bias"] = self.betas[layer.index][member].clone()
                state[f"{layer.name}.running_mean"] = running_mean[member].clone()
                state[f"{layer.name}.running_var"] = running_var[member].clone()
        return state


def _layers_of(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_children() if not isinstance(module, nn.Flatten)]


def stack_members(models: Sequence[nn.Module]) -> EnsembleMLP:
    """Return one `EnsembleMLP` holding copies of `models`' parameters (the members, in order).

    The models must be MLPs built by `build` with the same structure: flatten, then Linear,
    BatchNorm1d and elementwise activation modules, same shapes. Raises ModelError otherwise.
    """
    if not models:
        raise ModelError("stack_members needs at least one model")
    first = _layers_of(models[0])
    signature = [(name, type(m), tuple(p.shape for p in m.parameters())) for name, m in first]
    for position, model in enumerate(models[1:], start=1):
        other = [(name, type(m), tuple(p.shape for p in m.parameters())) for name, m in _layers_of(model)]
        if other != signature:
            raise ModelError(
                f"member {position} differs in structure from member 0; only same-shaped MLPs train as one ensemble"
            )
    layers: list[EnsembleLayer] = []
    weights: list[torch.Tensor] = []
    biases: list[torch.Tensor | None] = []
    norms: list[tuple[torch.Tensor, ...]] = []
    activations: list[nn.Module] = []
    bn_eps, bn_momentum = 1e-5, 0.1
    with torch.no_grad():
        for name, module in first:
            members: list[Any] = [dict(model.named_children())[name] for model in models]  # the same class as `module`
            module_type = type(module).__name__
            if isinstance(module, nn.Linear):
                layers.append(EnsembleLayer(name, "linear", module_type, len(weights)))
                weights.append(torch.stack([m.weight.T for m in members]).contiguous())  # (members, in, out)
                biases.append(
                    None if module.bias is None else torch.stack([m.bias for m in members])[:, None, :].contiguous()
                )
            elif (
                isinstance(module, nn.BatchNorm1d)
                and module.affine
                and module.track_running_stats
                and module.momentum is not None
            ):
                layers.append(EnsembleLayer(name, "batch", module_type, len(norms)))
                norms.append(
                    tuple(
                        torch.stack([getattr(m, k) for m in members]).clone()
                        for k in ("weight", "bias", "running_mean", "running_var")
                    )
                )
                bn_eps, bn_momentum = module.eps, module.momentum
            elif not any(True for _ in module.parameters()) and not any(True for _ in module.buffers()):
                # an elementwise activation: applied to (members, batch, features) it acts per member
                layers.append(EnsembleLayer(name, "activation", module_type, len(activations)))
                activations.append(module)
            else:
                raise ModelError(
                    f"layer {name!r} ({module_type}) cannot be stacked into an ensemble; train this model alone"
                )
    if not weights or layers[-1].kind != "linear":
        raise ModelError("an ensemble member must be an MLP ending in a Linear layer")
    return EnsembleMLP(layers, weights, biases, norms, activations, bn_eps, bn_momentum)
