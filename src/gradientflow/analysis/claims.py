"""The claims `gradientflow explain` checks, as one table of records read by the study and the page.

Each `Claim` row holds the words of the seed question and answer (how does batch normalization
"resolve" the vanishing gradient problem?) or of Ioffe & Szegedy (2015), which the answer quotes;
the experiments of `studies.explain` whose runs feed it; its rule in one sentence; the check
(`analysis.claim_checks`); the figure that decides it; and whether it can be checked on any
architecture (``explain --model``). Nothing else in the code numbers the claims.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import claim_checks as c
from .claim_checks import DRIFT_FACTOR, SATURATION_FLOOR, TRAINED_ACCURACY, VANISHING_RATIO
from .claim_records import Claim, ClaimData, ClaimResult, KeyNumber, not_applicable, not_decided
from .intervals import INTERVAL_NAME

__all__ = [
    "DRIFT_FACTOR",
    "SATURATION_FLOOR",
    "TRAINED_ACCURACY",
    "VANISHING_RATIO",
    "CLAIMS",
    "Claim",
    "ClaimData",
    "ClaimResult",
    "KeyNumber",
    "claim",
    "check_claims",
    "experiments_of",
    "not_applicable",
    "not_decided",
    "short_answer",
    "INTERVAL_NAME",
]

_ON_INTERVALS = "(judged on the 95% interval across seeds)"

CLAIMS: tuple[Claim, ...] = (
    Claim(
        1,
        "The vanishing gradient problem occurs when using the sigmoid activation function because sigmoid maps "
        "large input space into small space, so the gradient of big values will be close to zero.",
        "the question",
        "Without BN, deep sigmoid and tanh MLPs (PyTorch default init) pass a far smaller gradient to their first layer.",
        ("vanishing",),
        f"Supported when, for sigmoid and tanh, the first/last-layer grad_rms ratio at init of the deepest plain net "
        f"(depth >= 10) is below {c.VANISHING_RATIO} and smaller than at the shallowest depth {_ON_INTERVALS}.",
        c.check_vanishing,
        "profile-by-depth",
    ),
    Claim(
        2,
        "BN does not clip gradients to [0,1] or [-1,1]. It normalizes the outputs of the linear transformations "
        "[...] by subtracting the mean of a batch and dividing by its standard deviation.",
        "the answer",
        "BN's outputs (the activations' inputs) have batch mean ~0 (beta) and std ~1 (gamma), not a squashed range.",
        ("vanishing", "saturation"),
        f"Supported when at init every BN output has |mean| and |std - 1| below {c.STANDARDIZED_TOLERANCE} and reaches "
        f"beyond -1 and 1, and after training std / rms(gamma) is within {c.GAMMA_TOLERANCE:.0%} of 1 {_ON_INTERVALS}.",
        c.check_bn_standardizes,
        "bn-output-range",
    ),
    Claim(
        3,
        "Even if you still have some gradients which are close to the border regions afterwards, many won't. "
        "That is, BN reduces the number of gradients which might explode or vanish in this scenario.",
        "the answer",
        "BN lowers the fraction of saturated units (same init, data and seed, with vs without BN).",
        ("vanishing", "saturation"),
        f"Supported when in every net that saturates >= {c.SATURATION_FLOOR:.0%} without BN, the saturated fraction "
        f"without minus with BN is above 0 {_ON_INTERVALS}; no saturating net leaves it not decided.",
        c.check_saturation,
        "saturation-per-layer",
    ),
    Claim(
        4,
        "By normalizing activations throughout the network [...] it prevents the training from getting stuck in "
        "the saturated regimes of nonlinearities.",
        "Ioffe & Szegedy (2015), quoted in the answer",
        "During training the last hidden layer's input distribution (15/50/85th percentiles) drifts far less with BN.",
        ("drift",),
        f"Supported when the drift of the percentiles without BN is more than {c.DRIFT_FACTOR:g}x that with BN, "
        f"paired by seed {_ON_INTERVALS}; at most 1x is not supported, between is mixed.",
        c.check_percentile_drift,
        "percentiles",
    ),
    Claim(
        5,
        "In traditional deep networks, too-high learning rate may result in the gradients that explode or vanish "
        "[...] Batch Normalization helps address these issues.",
        "Ioffe & Szegedy (2015), quoted in the answer",
        "BN nets train at higher learning rates than the same nets without BN.",
        ("learning-rate",),
        f"Supported when the largest swept rate at which every seed reaches test accuracy > {c.TRAINED_ACCURACY} "
        f"without diverging is higher with BN {_ON_INTERVALS}; not decided when either net trains at no rate.",
        c.check_learning_rate,
        "accuracy-by-lr",
    ),
    Claim(
        6,
        "Batch Normalization (BN) does not prevent the vanishing or exploding gradient problem in a sense that "
        "these are impossible.",
        "the answer",
        "Deep plain BN-ReLU MLPs explode at init: the gradient grows toward the input by lambda(B) per layer.",
        ("bn-relu-depth",),
        "Supported when the deepest BN-ReLU net's first/last grad_rms ratio at init is above 1 and the fitted "
        f"per-layer growth of grad_rms^2 is above 1 {_ON_INTERVALS}; theory is drawn, not judged.",
        c.check_bn_relu_explosion,
        "growth-by-depth",
    ),
    Claim(
        7,
        "By normalizing activations throughout the network, it prevents small changes to the parameters from "
        "amplifying into larger and suboptimal changes in activations in gradients.",
        "Ioffe & Szegedy (2015), quoted in the answer (their sec. 3.3 shows it as scale invariance)",
        "With BN, scaling a layer's weights by a leaves its outputs and the gradient profile unchanged and scales dL/dW by 1/a.",
        ("weight-scale",),
        f"Supported when, with BN, activation-input stats move < {c.INVARIANCE_TOLERANCE} stds and the gradient "
        f"profile and a x dL/dW < {c.GRADIENT_INVARIANCE_TOLERANCE:.0%} across the swept weight scales a {_ON_INTERVALS}.",
        c.check_weight_scale_invariance,
        "scale-profile",
    ),
    Claim(
        8,
        "Vanishing and exploding gradients are not only a problem for sigmoid but tanh activation functions, too.",
        "the answer",
        "tanh nets without BN vanish with depth and saturate under a badly scaled N(0, 1) init.",
        ("vanishing", "saturation"),
        f"Supported when the deepest plain tanh net's first/last ratio at init is below {c.VANISHING_RATIO} and a "
        f"plain tanh net with N(0, 1) weights has >= {c.TANH_SATURATED:.0%} saturated units {_ON_INTERVALS}.",
        c.check_tanh,
        "tanh-vs-sigmoid",
        any_model="it compares tanh with sigmoid nets built for the purpose; run it on a model with tanh units in the study",
    ),
    Claim(
        9,
        "If you have m gradients in your current batch during training all of these will be normalized.",
        "the answer",
        "BN's backward pass, written out in numpy, checked against autograd and measured on a BN sigmoid MLP.",
        (),
        f"Supported when the written-out backward matches autograd (< {c.BACKWARD_TOLERANCE:g}), removes the "
        f"gradient's batch mean (< {c.MEAN_REMOVED:g} of its rms) and leaves a per-unit std within "
        f"{c.UNIT_STD_TOLERANCE:.0%} of 1; mechanics without the last is mixed.",
        c.check_bn_backward,
        "bn-backward",
        any_model="it is a property of BN's backward pass itself, measured once on a fixed net (see the study's page)",
    ),
)


def claim(claim_id: int) -> Claim:
    """The claim with id `claim_id` (1-9)."""
    for row in CLAIMS:
        if row.id == claim_id:
            return row
    raise KeyError(f"no claim {claim_id}; the claims are {', '.join(str(r.id) for r in CLAIMS)}")


def experiments_of(claims: Sequence[Claim] = CLAIMS) -> dict[str, tuple[int, ...]]:
    """Experiment key -> the ids of the claims its runs feed, in claim order."""
    feeds: dict[str, list[int]] = {}
    for row in claims:
        for key in row.experiments:
            feeds.setdefault(key, []).append(row.id)
    return {key: tuple(ids) for key, ids in feeds.items()}


def check_claims(data: Mapping[int, ClaimData], claims: Sequence[Claim] = CLAIMS) -> list[ClaimResult]:
    """Check every claim of `claims` on its data (claims missing from `data` are not decided)."""
    return [
        row.run(data[row.id]) if row.id in data else not_decided(row, "its experiments were not run") for row in claims
    ]


def short_answer(results: Sequence[ClaimResult]) -> str:
    """Two or three sentences answering the seed's question from `results`' verdicts and numbers."""
    by_id = {r.claim.id: r for r in results}

    def said(claim_id: int) -> str:
        return by_id[claim_id].verdict if claim_id in by_id else "not decided"

    sentences = []
    mechanism = [i for i in (2, 3, 4) if said(i) == "supported"]
    if said(1) == "supported" and mechanism:
        first = by_id[1].key_numbers[0] if by_id[1].key_numbers else None
        measured = f" ({first.label}: {first.value.text()})" if first is not None else ""
        sentences.append(
            "Without BN the gradient reaching the first layer is orders of "
            f"magnitude smaller than at the last layer{measured}; BN does not squash values into [0, 1] but "
            "re-standardizes every pre-activation"
            + (", which keeps units out of the saturated tails" if 3 in mechanism else "")
            + (" and keeps their distribution from drifting during training" if 4 in mechanism else "")
            + "."
        )
    elif said(1) == "supported":
        sentences.append(
            "Without BN the gradient vanishes toward the input, but the mechanism claims were not all supported."
        )
    else:
        sentences.append(f"The vanishing-gradient claim itself came out {said(1)} on these runs.")
    if said(6) == "supported":
        growth = next((k for k in by_id[6].key_numbers if "fitted" in k.label), None)
        rate = f" (about {growth.value.mean:.2g}x per layer in squared rms)" if growth and growth.value.finite else ""
        sentences.append(
            f"It does not make vanishing or exploding gradients impossible: a deep BN-ReLU net explodes at init{rate}."
        )
    weak = [r for r in results if r.verdict not in ("supported", "not applicable") or not r.robust]
    if weak:
        shown = ", ".join(
            f"claim {r.claim.id} ({r.verdict}{'' if r.robust or r.verdict == 'not decided' else ', not robust across seeds'})"
            for r in weak
        )
        sentences.append(f"Not (robustly) supported here: {shown}.")
    else:
        sentences.append("Every claim checked is supported, robustly across seeds.")
    return " ".join(sentences)
