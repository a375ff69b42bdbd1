"""Glorot & Bengio (2010), Figure 2: the paper's net and init, our variants, checkpoints and budgets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ....spec import ExperimentSpec, from_dict

__all__ = [
    "VARIANTS",
    "EARLY_STEP",
    "SATURATED_MEAN",
    "PAPER_JACOBIAN",
    "JACOBIAN_TOLERANCE",
    "EXAMPLES",
    "LR",
    "Budget",
    "QUICK",
    "FULL",
    "variant_spec",
    "checkpoints",
]


#: name -> (model.init, model.norm): the paper's net, its normalized init, and BN before each sigmoid.
VARIANTS: dict[str, tuple[str, str]] = {
    "standard": ("standard_uniform", "none"),
    "normalized": ("glorot_uniform", "none"),
    "standard + BN": ("standard_uniform", "batch"),
}


#: "Early": after 5,000 examples (500 updates of 10), a small fraction of one pass over MNIST.
EARLY_STEP = 500


#: A sigmoid layer whose mean output is under this counts as saturated near 0 (the rule this page decides by).
SATURATED_MEAN = 0.1


#: The paper's mean singular values of tanh layer Jacobians (section 4.2) and our tolerance.
PAPER_JACOBIAN = {"standard": 0.5, "normalized": 0.8}


JACOBIAN_TOLERANCE = 0.1


EXAMPLES = 300  # fixed test examples the activations are measured on, as in the paper


LR = 0.1  # the paper tuned it per model; 0.1 trains this net on MNIST without diverging


@dataclass(frozen=True)
class Budget:
    """How much of the paper's study a run does: steps, variants, checkpoints and the Jacobian's sample."""

    steps: int
    variants: tuple[str, ...]
    checkpoints: int
    jacobian_examples: int
    jacobian_activations: tuple[str, ...]


QUICK = Budget(EARLY_STEP, ("standard",), 7, 1, ("tanh",))


FULL = Budget(2500, tuple(VARIANTS), 13, 4, ("tanh", "sigmoid"))


def variant_spec(variant: str, dataset: str, steps: int, activation: str = "sigmoid") -> ExperimentSpec:
    """The spec of one variant: 4 x 1000 `activation` MLP, mini-batch 10, plain SGD."""
    init, norm = VARIANTS[variant]
    return from_dict(
        {
            "name": f"glorot2010-{variant.replace(' + ', '-').lower()}",
            "model": {
                "arch": "mlp",
                "depth": 4,
                "width": 1000,
                "activation": activation,
                "init": init,
                "norm": norm,
                "bias_init": 0.0,
            },
            "data": {"name": dataset, "batch_size": 10},
            "optim": {"name": "sgd", "lr": LR},
            "train": {"steps": steps, "eval_every": steps, "seed": 0},
        }
    )


def checkpoints(steps: int, count: int) -> list[int]:
    """Steps at which activations are measured: 0, then about `count` steps spaced geometrically
    from 10 to `steps` (always including EARLY_STEP when within range and `steps` itself)."""
    points = {0, steps, *np.unique(np.geomspace(10, steps, count).round().astype(int)).tolist()}
    if steps >= EARLY_STEP:
        points.add(EARLY_STEP)
    return sorted(int(p) for p in points)
