"""A zoo of small models with known gradient problems, as `gradientflow diagnose` factories.

Each function is a *factory*: called with no arguments, it returns ``(model, batches)`` and
optionally a loss function and an optimizer (see ``docs/diagnose.md``). Try::

    gradientflow diagnose examples/diagnose_zoo.py:vanishing_sigmoid
    gradientflow diagnose examples/diagnose_zoo.py:unstable_lr50 --try-fixes

The data is a fixed synthetic 10-class problem (64 inputs, a random linear teacher), so every
factory is deterministic and needs no download. ``diagnose`` seeds torch before calling a factory,
so PyTorch's default initialization is reproducible too.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

import gradientflow as gf

INPUTS, CLASSES, WIDTH, BATCH = 64, 10, 64, 64


def synthetic_batches(count: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Return `count` batches of (inputs (64, 64) ~ N(0, 1), labels of a random linear teacher)."""
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(INPUTS, CLASSES, generator=generator)
    batches = []
    for _ in range(count):
        x = torch.randn(BATCH, INPUTS, generator=generator)  # (batch, inputs)
        batches.append((x, (x @ teacher).argmax(dim=1)))
    return batches


def plain_mlp(depth: int, activation: type[nn.Module], norm: bool = False) -> nn.Sequential:
    """Return flatten-free ``fc1, [bn1], act1, ..., out`` with PyTorch's default initialization."""
    layers: list[tuple[str, nn.Module]] = []
    features = INPUTS
    for index in range(1, depth + 1):
        layers.append((f"fc{index}", nn.Linear(features, WIDTH)))
        if norm:
            layers.append((f"bn{index}", nn.BatchNorm1d(WIDTH)))
        layers.append((f"act{index}", activation()))
        features = WIDTH
    layers.append(("out", nn.Linear(features, CLASSES)))
    return nn.Sequential(OrderedDict(layers))


def _init_linear(model: nn.Module, weight_init, bias: float = 0.0) -> nn.Module:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                weight_init(module.weight)
                nn.init.constant_(module.bias, bias)
    return model


def _he(weight: torch.Tensor) -> None:
    nn.init.kaiming_normal_(weight, nonlinearity="relu")


# ----------------------------------------------------------------------------- known problems


def vanishing_sigmoid():  # type: ignore[no-untyped-def]
    """20 sigmoid layers, PyTorch's default init: the gradient shrinks about 7x per layer going back."""
    return plain_mlp(20, nn.Sigmoid), synthetic_batches()


def saturated_tanh():  # type: ignore[no-untyped-def]
    """10 tanh layers with N(0, 1) weights: pre-activations with std about 8, most units saturated."""
    model = _init_linear(plain_mlp(10, nn.Tanh), lambda w: nn.init.normal_(w, 0.0, 1.0))
    return model, synthetic_batches()


def dead_relu():  # type: ignore[no-untyped-def]
    """6 ReLU layers, He init, every bias at -5: almost no unit is ever active."""
    return _init_linear(plain_mlp(6, nn.ReLU), _he, bias=-5.0), synthetic_batches()


def exploding_bn_relu():  # type: ignore[no-untyped-def]
    """60 x (Linear, BatchNorm, ReLU) at init: BN makes the gradient grow going back (Yang et al. 2019)."""
    return plain_mlp(60, nn.ReLU, norm=True), synthetic_batches()


def unstable_lr50():  # type: ignore[no-untyped-def]
    """The healthy He-initialized ReLU MLP with SGD at a learning rate of 50."""
    model, batches = healthy_he_relu()
    return model, batches, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=50.0)


class ShrinkFromStep(torch.optim.SGD):
    """SGD that, from step `start` on, multiplies every weight matrix by `factor` after each update.

    A weight decay of (1 - factor) / lr switched on mid-run, as a misconfigured schedule would.
    """

    def __init__(self, params, lr: float, start: int, factor: float) -> None:  # type: ignore[no-untyped-def]
        super().__init__(params, lr=lr)
        self.start, self.factor, self.steps_taken = start, factor, 0

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def,override]
        loss = super().step(closure)
        if self.steps_taken >= self.start:
            for group in self.param_groups:
                for weight in group["params"]:
                    if weight.dim() >= 2:
                        weight.mul_(self.factor)
        self.steps_taken += 1
        return loss


def late_vanishing():  # type: ignore[no-untyped-def]
    """A healthy 10-layer tanh MLP (Glorot init); after the update of step 12 its optimizer shrinks every
    weight matrix by 0.75 at each step.

    Steps 0-12 are healthy; then the gradient reaching the first layers loses about 0.75x per layer
    more at every step: the run starts healthy and ends vanishing (onset at step 13-14). Each
    shrink changes a weight by 25% of its norm, under the 0.3 update-ratio threshold.
    """
    model = _init_linear(plain_mlp(10, nn.Tanh), nn.init.xavier_normal_)
    return model, synthetic_batches(), None, ShrinkFromStep(model.parameters(), lr=0.1, start=12, factor=0.75)


# ----------------------------------------------------------------------------- healthy models


def healthy_he_relu():  # type: ignore[no-untyped-def]
    """10 ReLU layers with He init and zero biases: the gradient keeps its size through depth."""
    return _init_linear(plain_mlp(10, nn.ReLU), _he), synthetic_batches()


class ResidualBlock(nn.Module):
    """Pre-norm residual block ``x + fc2(relu(fc1(norm(x))))``: the branch adds to the stream."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


def healthy_resnet():  # type: ignore[no-untyped-def]
    """ResNet-style MLP: input layer, 10 pre-norm residual blocks, output layer (default init).

    Each branch's first layer is He-initialized; its last is scaled down by 1/sqrt(blocks), so
    the stream's variance grows by a bounded factor over the depth (as in Fixup / GPT-2).
    """
    blocks = [(f"block{i}", ResidualBlock(WIDTH)) for i in range(1, 11)]
    model = nn.Sequential(OrderedDict([("inp", nn.Linear(INPUTS, WIDTH)), *blocks, ("out", nn.Linear(WIDTH, CLASSES))]))
    with torch.no_grad():
        for _, block in blocks:
            _init_linear(block, _he)
            block.fc2.weight.mul_(len(blocks) ** -0.5)
    return model, synthetic_batches()


class FunctionalSigmoidNet(nn.Module):
    """A custom module calling ``torch.sigmoid`` in `forward`: visible to gradientflow through `tap`."""

    def __init__(self, depth: int = 8) -> None:
        super().__init__()
        self.hidden = nn.ModuleList(nn.Linear(INPUTS if i == 0 else WIDTH, WIDTH) for i in range(depth))
        self.out = nn.Linear(WIDTH, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.hidden):
            x = torch.sigmoid(gf.tap(layer(x), f"sigmoid{index + 1}", "sigmoid"))
        return self.out(x)


def functional_sigmoid():  # type: ignore[no-untyped-def]
    """8 functional sigmoids (tapped), default init: vanishing, seen only through the taps."""
    return FunctionalSigmoidNet(8), synthetic_batches()


def _image_batches(count: int = 8, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(32, 3, 16, 16, generator=generator), torch.randint(0, CLASSES, (32,), generator=generator))
        for _ in range(count)
    ]


def small_cnn(norm: str = "batch") -> nn.Sequential:
    """Return 3 x (conv 3x3, BatchNorm or GroupNorm, ReLU, 2x2 pool), global average pool, linear."""
    layers: list[tuple[str, nn.Module]] = []
    channels = 3
    for index, out in enumerate((16, 32, 32), start=1):
        layers.append((f"conv{index}", nn.Conv2d(channels, out, 3, padding=1)))
        layers.append((f"norm{index}", nn.BatchNorm2d(out) if norm == "batch" else nn.GroupNorm(4, out)))
        layers += [(f"act{index}", nn.ReLU()), (f"pool{index}", nn.MaxPool2d(2))]
        channels = out
    layers += [("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("out", nn.Linear(channels, CLASSES))]
    return nn.Sequential(OrderedDict(layers))


def cnn_batchnorm():  # type: ignore[no-untyped-def]
    """Small CNN with BatchNorm on random 3x16x16 images: healthy."""
    return small_cnn("batch"), _image_batches()


def cnn_groupnorm():  # type: ignore[no-untyped-def]
    """Small CNN with GroupNorm (4 groups) on random 3x16x16 images: healthy."""
    return small_cnn("group"), _image_batches()


def custom_loss_and_optimizer():  # type: ignore[no-untyped-def]
    """The four-part return: (model, batches, loss function, optimizer); the loss may be any callable."""
    model, batches = healthy_he_relu()
    return (
        model,
        batches,
        lambda output, target: F.cross_entropy(output, target),
        torch.optim.Adam(model.parameters(), 1e-3),
    )


ZOO = {
    "vanishing_sigmoid": ("vanishing", vanishing_sigmoid),
    "saturated_tanh": ("saturated", saturated_tanh),
    "dead_relu": ("dead", dead_relu),
    "exploding_bn_relu": ("exploding", exploding_bn_relu),
    "healthy_he_relu": ("healthy", healthy_he_relu),
    "healthy_resnet": ("healthy", healthy_resnet),
    "unstable_lr50": ("unstable updates", unstable_lr50),
    "late_vanishing": ("vanishing", late_vanishing),
}
"""Each zoo factory's name -> (the verdict gradientflow should reach, the factory)."""
