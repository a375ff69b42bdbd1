"""Each claim rule on hand-made frames of three seeds: supported, not supported, and not robust cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradientflow.analysis import claims
from gradientflow.analysis.claim_records import ClaimData
from gradientflow.analysis.intervals import estimate

from .frames import act, gradient_profile, metrics, row, runs, stats

SEEDS = (0, 1, 2)


def check(claim_id: int, frame: pd.DataFrame, rows: list[dict], accuracy: dict[str, float] | None = None):  # type: ignore[no-untyped-def]
    empty = pd.DataFrame(columns=["run_id", "step", "name", "value"])
    data = ClaimData(frame, stats(rows) if rows else stats([act("x", 0, 1)]), metrics(accuracy) if accuracy else empty)
    return claims.claim(claim_id).run(data)


def test_the_table_numbers_each_claim_once_and_names_its_experiments() -> None:
    assert [c.id for c in claims.CLAIMS] == list(range(1, 10))
    assert claims.experiments_of()["vanishing"] == (1, 2, 3, 8)
    assert claims.experiments_of()["learning-rate"] == (5,)
    for entry in claims.CLAIMS:
        assert entry.rule.count(". ") == 0 and entry.rule.endswith(".")  # one sentence
        assert entry.words and entry.source and entry.figure


# claim 1 ------------------------------------------------------------------------------------------


def _vanishing(ratio5: float, ratio10: float, spread: float = 0.1):  # type: ignore[no-untyped-def]
    specs, rows = [], []
    for seed in SEEDS:
        jitter = 1 + spread * (seed - 1)
        for activation in ("sigmoid", "tanh"):
            for depth, ratio in ((5, ratio5), (10, ratio10)):
                run_id = f"{activation}{depth}-{seed}"
                specs.append({"run_id": run_id, "seed": seed, "model.depth": depth, "model.activation": activation})
                rows += gradient_profile(run_id, [ratio * jitter, 0.5, 1.0])
    return check(1, runs(*specs), rows)


def test_vanishing() -> None:
    supported = _vanishing(0.05, 1e-4)
    assert supported.verdict == "supported" and supported.robust
    key = supported.key_numbers[0]
    assert key.label == "first/last grad_rms ratio, sigmoid depth 10, no BN, init"
    assert key.value.mean == pytest.approx(1e-4 * (0.9 * 1.0 * 1.1) ** (1 / 3))  # geometric mean of the seeds
    assert key.value.low < key.value.mean < key.value.high
    assert _vanishing(2.0, 3.0).verdict == "not supported"
    assert _vanishing(1.0, 0.5).verdict == "mixed"


def test_a_mean_that_satisfies_the_rule_with_an_interval_that_does_not_is_not_supported() -> None:
    shaky = _vanishing(0.5, 0.08, spread=0.9)  # seeds 0.008, 0.08, 0.152: mean under 0.1, interval across it
    assert shaky.verdict == "mixed" and not shaky.robust
    assert "not robust" in shaky.note


# claim 2 ------------------------------------------------------------------------------------------


def _standardizes(mean: float, std: float, low: float, high: float, final_std: float, gamma_rms: float):  # type: ignore[no-untyped-def]
    specs, rows = [], []
    for seed in SEEDS:
        run_id = f"b{seed}"
        specs.append({"run_id": run_id, "seed": seed, "model.norm": "batch"})
        rows += [act(run_id, 0, 2, pre_mean=mean, pre_std=std + 0.001 * seed, pre_min=low, pre_max=high)]
        rows += [act(run_id, 10, 2, pre_mean=0.0, pre_std=final_std, pre_min=-5, pre_max=5)]
        rows += [row(run_id, 10, 1, "norm", "bn1", bn_gamma_norm=gamma_rms * math.sqrt(100))]
    return check(2, runs(*specs), rows)


def test_bn_standardizes() -> None:
    assert _standardizes(0.0, 1.0, -3.0, 3.0, 2.0, 2.0).verdict == "supported"
    assert _standardizes(0.5, 0.3, -0.5, 0.5, 2.0, 1.0).verdict == "not supported"
    mixed = _standardizes(0.0, 1.0, -3.0, 3.0, 2.0, 1.0)
    assert mixed.verdict == "mixed"
    assert mixed.key_numbers[3].value.mean == pytest.approx(1.0)


# claim 3 ------------------------------------------------------------------------------------------


def _saturation(pairs: list[tuple[float, float]]):  # type: ignore[no-untyped-def]
    specs, rows = [], []
    for index, (plain, bn) in enumerate(pairs):
        for seed in SEEDS:
            for norm, value in (("none", plain), ("batch", bn)):
                run_id = f"{norm}{index}-{seed}"
                specs.append({"run_id": run_id, "seed": seed, "model.norm": norm, "model.depth": 5 + index})
                rows += [act(run_id, step, 1, saturated_frac=value + 0.001 * seed) for step in (0, 10)]
    return check(3, runs(*specs), rows)


@pytest.mark.parametrize(
    "pairs, verdict",
    [
        ([(0.5, 0.01), (0.0, 0.0)], "supported"),  # the non-saturating pair is not tested
        ([(0.5, 0.6)], "not supported"),
        ([(0.5, 0.01), (0.3, 0.4)], "mixed"),
        ([(0.0, 0.02)], "not decided"),  # nothing saturates: nothing to test
    ],
)
def test_saturation(pairs: list[tuple[float, float]], verdict: str) -> None:
    result = _saturation(pairs)
    assert result.verdict == verdict
    if verdict == "not decided":
        assert "nothing for BN to reduce" in result.note


# claim 4 ------------------------------------------------------------------------------------------


def _drift(plain_end: tuple[float, float, float], bn_end: tuple[float, float, float]):  # type: ignore[no-untyped-def]
    specs, rows = [], []
    for seed in SEEDS:
        for norm, end in (("none", plain_end), ("batch", bn_end)):
            run_id = f"{norm}{seed}"
            specs.append({"run_id": run_id, "seed": seed, "model.norm": norm})
            rows.append(act(run_id, 0, 1, pre_p15=9.0, pre_p50=9.0, pre_p85=9.0))  # an earlier layer: ignored
            rows.append(act(run_id, 0, 3, pre_p15=-1.0, pre_p50=0.0, pre_p85=1.0))
            shift = 0.01 * seed
            rows.append(act(run_id, 100, 3, pre_p15=end[0], pre_p50=end[1] + shift, pre_p85=end[2]))
    return check(4, runs(*specs), rows)


def test_percentile_drift() -> None:
    supported = _drift((2.0, 3.0, 4.0), (-1.0, 0.1, 1.0))
    assert supported.verdict == "supported"
    plain = supported.key_numbers[0].value
    assert plain.mean == pytest.approx(float(np.exp(np.mean(np.log([3.0 / 2, 3.01 / 2, 3.02 / 2])))))
    assert _drift((-1.0, 0.1, 1.0), (2.0, 3.0, 4.0)).verdict == "not supported"
    assert _drift((-1.0, 0.3, 1.0), (-1.0, 0.2, 1.0)).verdict == "mixed"  # ~1.5x: not clearly larger


# claim 5 ------------------------------------------------------------------------------------------


def _learning_rate(plain: dict[float, float], bn: dict[float, float], diverged: set[str] = frozenset()):  # type: ignore[no-untyped-def]
    specs, accuracy = [], {}
    for seed in SEEDS:
        for norm, table in (("none", plain), ("batch", bn)):
            for lr, value in table.items():
                run_id = f"{norm}-{lr:g}-{seed}"
                status = "diverged" if f"{norm}-{lr:g}" in diverged else "finished"
                specs.append({"run_id": run_id, "seed": seed, "model.norm": norm, "optim.lr": lr, "status": status})
                accuracy[run_id] = value + 0.01 * seed
    return check(5, runs(*specs), [], accuracy)


def test_learning_rate() -> None:
    supported = _learning_rate({0.1: 0.9, 1.0: 0.8, 10.0: 0.1}, {0.1: 0.9, 1.0: 0.9, 10.0: 0.9})
    assert supported.verdict == "supported" and supported.robust
    assert "1 without BN, 10 with BN" in supported.summary
    # a diverged run does not count, whatever its last accuracy
    assert _learning_rate({0.1: 0.9, 1.0: 0.8}, {0.1: 0.9, 1.0: 0.9}, {"batch-1"}).verdict == "not supported"
    assert _learning_rate({0.1: 0.9, 1.0: 0.8}, {0.1: 0.9, 1.0: 0.9}).verdict == "not supported"


def test_a_sweep_where_the_plain_net_never_trains_decides_nothing() -> None:
    result = _learning_rate({0.1: 0.1, 1.0: 0.1}, {0.1: 0.9, 1.0: 0.9})
    assert result.verdict == "not decided"
    assert "the plain net trains at none of the swept rates" in result.note


# claim 6 ------------------------------------------------------------------------------------------


def _explosion(ratios: tuple[float, ...]):  # type: ignore[no-untyped-def]
    specs, rows = [], []
    for seed in SEEDS:
        for depth, ratio in zip((5, 10, 20), ratios):
            run_id = f"d{depth}-{seed}"
            specs.append({"run_id": run_id, "seed": seed, "model.depth": depth, "model.activation": "relu",
                          "model.norm": "batch", "data.batch_size": 32})  # fmt: skip
            rows += gradient_profile(run_id, [ratio * (1 + 0.01 * seed), 1.0])
    return check(6, runs(*specs), rows)


@pytest.mark.parametrize(
    "ratios, verdict",
    [((2.0, 4.0, 16.0), "supported"), ((0.5, 0.25, 0.1), "not supported"), ((0.5, 1.5, 3.0), "supported")],
)
def test_bn_relu_explosion(ratios: tuple[float, ...], verdict: str) -> None:
    result = _explosion(ratios)
    assert result.verdict == verdict
    theory = next(k for k in result.key_numbers if "theory" in k.label)
    assert theory.value.mean == pytest.approx(1.52, abs=0.01)


def test_bn_relu_growth_fit_recovers_a_known_rate() -> None:
    specs, rows = [], []
    for seed in SEEDS:
        for depth in (5, 10, 20):
            run_id = f"d{depth}-{seed}"
            specs.append({"run_id": run_id, "seed": seed, "model.depth": depth, "model.norm": "batch",
                          "model.activation": "relu", "data.batch_size": 32})  # fmt: skip
            rows += gradient_profile(run_id, [1.3 ** ((depth - 1) / 2), 1.0])
    result = check(6, runs(*specs), rows)
    assert result.key_numbers[0].value.mean == pytest.approx(1.3)


# claim 7 ------------------------------------------------------------------------------------------


def _weight_scale(pre_shift: float, weight_power: float, profile_power: float = 0.0):  # type: ignore[no-untyped-def]
    specs, rows = [], []
    for seed in SEEDS:
        for scale in (0.25, 1.0, 4.0):
            run_id = f"a{scale:g}-{seed}"
            specs.append({"run_id": run_id, "seed": seed, "model.norm": "batch", "model.weight_scale": scale})
            shift = pre_shift * math.log10(scale)
            for order, grad in ((2, 0.5 * scale**profile_power), (4, 1.0)):
                rows.append(act(run_id, 0, order, pre_mean=shift, pre_std=1.0, pre_p15=-1 + shift, pre_p50=shift,
                                pre_p85=1 + shift, grad_rms=grad * 3.0 * scale))  # fmt: skip
            for order, layer in ((1, "fc1"), (3, "fc2"), (5, "out")):
                norm = 2.0 * 3.0 * scale * scale**weight_power * (1 + 0.001 * seed)
                rows.append(row(run_id, 0, order, "weight", layer, weight_grad_norm=norm))
    return check(7, runs(*specs), rows)


def test_weight_scale_invariance() -> None:
    assert _weight_scale(0.0, -1.0).verdict == "supported"  # dL/dW ~ 1/a once the incoming gradient is divided out
    assert _weight_scale(1.0, 0.0, profile_power=1.0).verdict == "not supported"
    assert _weight_scale(0.0, 0.0).verdict == "mixed"


# claim 8 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ratio, saturated, verdict", [(1e-3, 0.5, "supported"), (0.5, 0.0, "not supported"), (1e-3, 0.0, "mixed")]
)
def test_tanh(ratio: float, saturated: float, verdict: str) -> None:
    specs, rows = [], []
    for seed in SEEDS:
        specs += [
            {"run_id": f"t10-{seed}", "seed": seed, "model.activation": "tanh", "model.depth": 10},
            {"run_id": f"tn-{seed}", "seed": seed, "model.activation": "tanh", "model.init": "small_gaussian"},
        ]
        rows += gradient_profile(f"t10-{seed}", [ratio * (1 + 0.01 * seed), 1.0])
        rows += [act(f"tn-{seed}", 0, 1, saturated_frac=saturated + 0.001 * seed)]
    assert check(8, runs(*specs), rows).verdict == verdict


# claim 9 ------------------------------------------------------------------------------------------


def _backward(mean_out: float, std_out: float, autograd_error: float = 1e-15):  # type: ignore[no-untyped-def]
    gradients = pd.DataFrame([{"layer": "bn1", "step": 0, "mean_in": 0.05, "mean_out": mean_out, "x_hat_in": 0.1,
                               "x_hat_out": 1e-5, "std_in": 1e-4, "std_out": std_out, "decomposition_error": 1e-7}])  # fmt: skip
    empty = pd.DataFrame({"run_id": []})
    return claims.claim(9).run(ClaimData(empty, empty, empty, gradients, autograd_error))


def test_bn_backward() -> None:
    assert _backward(1e-9, 1.0).verdict == "supported"
    mixed = _backward(1e-9, 1e-3)
    assert mixed.verdict == "mixed"
    assert "not standardized" in mixed.summary
    assert _backward(1e-9, 1e-3, autograd_error=1e-2).verdict == "mixed"


# the short answer ---------------------------------------------------------------------------------


def test_short_answer_follows_the_verdicts() -> None:
    good = _vanishing(0.05, 1e-4)
    saturated = _saturation([(0.5, 0.01)])
    text = claims.short_answer([good, saturated])
    assert "orders of magnitude smaller" in text and "saturated tails" in text
    bad = claims.short_answer([_vanishing(2.0, 3.0), saturated])
    assert "not supported" in bad and "orders of magnitude" not in bad
    assert claims.short_answer([good, saturated]) != bad


def test_estimate_matches_a_hand_computed_t_interval() -> None:
    value = estimate([1.0, 2.0, 3.0])
    assert value.mean == 2.0
    assert value.high - value.mean == pytest.approx(4.302653 * 1.0 / math.sqrt(3))
