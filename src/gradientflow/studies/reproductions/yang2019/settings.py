"""Yang et al. (2019): the published lambda(B), the nets we measure (depths, batch sizes, seeds) and budgets."""

from __future__ import annotations

from dataclasses import dataclass

from ....spec import ExperimentSpec, from_dict

__all__ = ["PUBLISHED_RELU", "TOLERANCE", "TRIM", "Budget", "QUICK", "FULL", "budget_for", "study_specs"]


#: Yang et al. (2019)'s table of lambda(B) for BN-ReLU (their section 3.2).
PUBLISHED_RELU: dict[int, float] = {4: 3.084, 8: 1.788, 16: 1.590, 32: 1.522, 64: 1.493, 128: 1.480}


#: A measured rate agrees when within this relative distance of lambda(B) (the rule this page decides by).
TOLERANCE = 0.10


#: Layers left out of the fit at each end: the gradient needs a few layers from the output to
#: settle on the direction that grows fastest, and layer 1 sees the raw input, not BN's fixed point.
TRIM = 5


@dataclass(frozen=True)
class Budget:
    """The nets measured: depth and width, the batch sizes, and the seeds per activation."""

    depth: int  # hidden layers: at least 50, so the growth is read over many layers past both ends
    width: int  # the theory is for infinite width; 512 keeps finite-width errors near 1%
    batches: tuple[int, ...]
    seeds: dict[str, tuple[int, ...]]  # per activation; each seed: another net and another batch


# Quick: the seconds CI can afford (~3 s a run on a busy 2-core machine); relu, the asserted case, gets two seeds.
QUICK = Budget(50, 512, (8, 32), {"relu": (0, 1), "tanh": (0,), "linear": (0,)})


FULL = Budget(64, 512, (4, 8, 16, 32, 64, 128), dict.fromkeys(("relu", "tanh", "linear"), (0, 1, 2, 3)))


def budget_for(quick: bool) -> Budget:
    """The quick budget (CI: two batch sizes, fewer seeds) or the full one."""
    return QUICK if quick else FULL


def study_specs(quick: bool) -> list[ExperimentSpec]:
    """One sweep of one-step runs per activation: batch size x seed, BN before every activation."""
    b = budget_for(quick)
    return [_spec(b, activation, seeds) for activation, seeds in b.seeds.items()]


def _spec(b: Budget, activation: str, seeds: tuple[int, ...]) -> ExperimentSpec:
    return from_dict(
        {
            "name": f"yang2019-explosion-{activation}",
            # lecun_normal: the paper's W ~ N(0, sigma_w2 / n) with sigma_w2 = 1 (BN makes the scale irrelevant).
            "model": {
                "arch": "mlp",
                "depth": b.depth,
                "width": b.width,
                "activation": activation,
                "norm": "batch",
                "init": "lecun_normal",
            },
            # n_train is a few batches of the largest B; n_test small: evaluation is not what we measure.
            "data": {
                "name": "synthetic_teacher",
                "batch_size": b.batches[0],
                "options": {"n_train": 2 * max(b.batches), "n_test": 64, "n_features": 256},
            },
            # One step with a tiny lr: the step-1 evaluation stays finite even where the gradient is huge.
            "optim": {"name": "sgd", "lr": 1e-6},
            "train": {"steps": 1, "eval_every": 1},
            "probe": {"every": 1},
            "sweep": {"data.batch_size": list(b.batches), "seeds": list(seeds)},
        }
    )
