"""Glorot & Bengio (2010), Figure 2: sigmoid activations of a 4 x 1000 MLP during training.

"Understanding the difficulty of training deep feedforward neural networks" (AISTATS 2010):
with the standard init U[-1/sqrt(n), 1/sqrt(n)], mini-batches of 10 and plain SGD, the mean
output of the top hidden sigmoid layer, measured on 300 fixed test examples, drops to near 0
early in training (the units saturate) and recovers only slowly; lower layers stay near 0.5.
Section 4.2 adds that the layer-to-layer Jacobians of a tanh net have mean singular values
of about 0.5 with the standard init and 0.8 with their normalized ("Xavier") init.

We train the paper's net on MNIST, beside the normalized init and a BN-before-sigmoid variant,
and measure each hidden layer's activation mean and std on 300 fixed test examples at
checkpoints spaced geometrically (the interesting part is early). This needs the model between
steps, so the loop is run here (the lab's batch order and optimizer, no probe) rather than
through the runner; nothing is stored in the reproduction's database.

The package runs in the order of its modules: `settings` (the paper's set-up and our budgets),
`measurement` (what is measured), `comparison` (the table and notes), `figures` (the PNGs).
"""

from __future__ import annotations

import torch

from ..base import ReproductionContext, ReproductionResult, choose_mnist
from .comparison import compare, saturation_notes
from .figures import draw_activations, draw_jacobians
from .measurement import Trace, activation_trace, jacobian_singular_values
from .settings import (
    EARLY_STEP,
    EXAMPLES,
    FULL,
    LR,
    PAPER_JACOBIAN,
    QUICK,
    SATURATED_MEAN,
    VARIANTS,
    checkpoints,
    variant_spec,
)

__all__ = [
    "VARIANTS",
    "EARLY_STEP",
    "SATURATED_MEAN",
    "Trace",
    "variant_spec",
    "checkpoints",
    "activation_trace",
    "jacobian_singular_values",
    "reproduce",
]


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Train the variants, measure activations and Jacobians, draw the figures; see the module docstring."""
    b = QUICK if context.quick else FULL
    dataset, data_used = choose_mnist(context.data_dir)
    data_dir = str(context.data_dir) if context.data_dir else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread, no oversubscription
    try:
        traces: dict[str, Trace] = {}
        for variant in b.variants:
            context.on_stage(f"training {variant}: {b.steps} steps of mini-batch 10")
            traces[variant] = activation_trace(
                variant_spec(variant, dataset, b.steps), variant, data_dir, b.checkpoints
            )
        context.on_stage("Jacobian singular values at init")
        jacobians = {
            (activation, variant): jacobian_singular_values(variant_spec(variant, dataset, 1, activation), b.jacobian_examples, data_dir)
            for activation in b.jacobian_activations for variant in ("standard", "normalized")
        }  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    figures = [
        draw_activations(traces, context.figure_dir / "activations.png"),
        draw_jacobians(jacobians, PAPER_JACOBIAN, context.figure_dir / "jacobians.png"),
    ]
    notes = [
        f"Test accuracy after {b.steps} steps: "
        + ", ".join(f"{v} {t.test_accuracy:.3f}" for v, t in traces.items())
        + "."
    ]
    stuck = [v for v, t in traces.items() if t.test_accuracy < 0.2]
    if stuck:
        notes.append(
            f"Still at chance level (10 classes) after {b.steps} steps: {', '.join(stuck)}; the plateau the paper attributes to the saturated top layer, whose outputs near 0 leave the softmax to its biases."
        )
    notes += saturation_notes(traces)
    notes.append("Training time per variant: " + ", ".join(f"{v} {t.seconds:.0f} s" for v, t in traces.items()) + ".")
    if context.quick:
        notes.append(
            "Quick variant: the standard init only, and tanh Jacobians on one example; run without --quick for all variants."
        )
    settings = {
        "learning rate": f"{LR} (plain SGD; the paper tuned it per model and does not list it)",
        "training length": f"{b.steps} updates of mini-batch 10 ({b.steps * 10:,} examples); the paper trained for far longer on Shapeset-3x2",
        "data": "MNIST instead of Figure 2's Shapeset-3x2 (the paper also trains these nets on MNIST, in its Table 1)",
        "measurement": f"mean and std over {EXAMPLES} fixed test examples x 1000 units of each sigmoid's output, model in eval mode",
        "Jacobians": f"J = diag(phi'(s)) W for hidden layers 2-4 at init, mean singular value over {b.jacobian_examples} test example(s)",
        "biases": "0 at init (the paper does not say; the standard init concerns the weights)",
    }
    return ReproductionResult(
        name=context.name,
        title="Glorot & Bengio 2010, Figure 2: activations of 4 x 1000 sigmoid layers during training",
        citation="X. Glorot, Y. Bengio. Understanding the difficulty of training deep feedforward neural networks. AISTATS 2010.",
        comparisons=compare(traces, jacobians),
        figures=figures,
        data_used=data_used,
        settings=settings,
        notes=notes,
    )
