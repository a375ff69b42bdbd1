"""Each claim rule on hand-made frames: a supported, a not-supported and a mixed case."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gradientflow.analysis import claims

from .frames import act, gradient_profile, metrics, row, runs, stats


def test_verdict_from() -> None:
    assert claims.verdict_from([True, True]) == "supported"
    assert claims.verdict_from([False, False]) == "not supported"
    assert claims.verdict_from([True, False]) == "mixed"
    assert claims.verdict_from([]) == "not supported"


# claim 1 ------------------------------------------------------------------------------------------


def _vanishing(ratio5: float, ratio10: float):  # type: ignore[no-untyped-def]
    frame = runs(
        {"run_id": "s5", "model.depth": 5},
        {"run_id": "s10", "model.depth": 10},
        {"run_id": "t5", "model.depth": 5, "model.activation": "tanh"},
        {"run_id": "t10", "model.depth": 10, "model.activation": "tanh"},
    )
    rows = []
    for run_id, ratio in (("s5", ratio5), ("s10", ratio10), ("t5", ratio5), ("t10", ratio10)):
        rows += gradient_profile(run_id, [ratio, 0.5, 1.0])
    return claims.check_vanishing(frame, stats(rows))


@pytest.mark.parametrize(
    "ratio5, ratio10, verdict",
    [(0.05, 1e-4, "supported"), (2.0, 3.0, "not supported"), (1.0, 0.5, "mixed")],
)
def test_vanishing(ratio5: float, ratio10: float, verdict: str) -> None:
    finding = _vanishing(ratio5, ratio10)
    assert finding.verdict == verdict
    assert finding.measurements["grad ratio, tanh depth 10, no BN, init"] == pytest.approx(ratio10)
    assert f"{ratio10:.3g}" in finding.summary


# claim 2 ------------------------------------------------------------------------------------------


def _standardizes(mean: float, std: float, low: float, high: float, final_std: float, gamma_rms: float):  # type: ignore[no-untyped-def]
    rows = [act("b", 0, 2, pre_mean=mean, pre_std=std, pre_min=low, pre_max=high)]
    rows += [act("b", 10, 2, pre_mean=0.0, pre_std=final_std, pre_min=-5, pre_max=5)]
    rows += [row("b", 10, 1, "norm", "bn1", bn_gamma_norm=gamma_rms * math.sqrt(100))]
    return claims.check_bn_standardizes(runs({"run_id": "b", "model.norm": "batch"}), stats(rows))


def test_bn_standardizes() -> None:
    assert _standardizes(0.0, 1.0, -3.0, 3.0, 2.0, 2.0).verdict == "supported"
    assert _standardizes(0.5, 0.3, -0.5, 0.5, 2.0, 1.0).verdict == "not supported"
    mixed = _standardizes(0.0, 1.0, -3.0, 3.0, 2.0, 1.0)
    assert mixed.verdict == "mixed"
    assert mixed.measurements["max |pre_std / rms(gamma) - 1|, trained"] == pytest.approx(1.0)


# claim 3 ------------------------------------------------------------------------------------------


def _saturation(pairs: list[tuple[float, float]]):  # type: ignore[no-untyped-def]
    specs, rows = [], []
    for index, (plain, bn) in enumerate(pairs):
        for norm, value in (("none", plain), ("batch", bn)):
            run_id = f"{norm}{index}"
            specs.append({"run_id": run_id, "model.norm": norm, "model.depth": 5 + index})
            rows += [act(run_id, step, 1, saturated_frac=value) for step in (0, 10)]
    return claims.check_saturation(runs(*specs), stats(rows))


@pytest.mark.parametrize(
    "pairs, verdict",
    [
        ([(0.5, 0.01), (0.0, 0.0)], "supported"),  # the non-saturating pair is not tested
        ([(0.5, 0.6)], "not supported"),
        ([(0.5, 0.01), (0.3, 0.4)], "mixed"),
        ([(0.0, 0.02)], "mixed"),  # nothing saturates: nothing to test
    ],
)
def test_saturation(pairs: list[tuple[float, float]], verdict: str) -> None:
    assert _saturation(pairs).verdict == verdict


# claim 4 ------------------------------------------------------------------------------------------


def _drift(plain_end: tuple[float, float, float], bn_end: tuple[float, float, float]):  # type: ignore[no-untyped-def]
    rows = []
    for run_id, end in (("p", plain_end), ("b", bn_end)):
        rows.append(act(run_id, 0, 1, pre_p15=9.0, pre_p50=9.0, pre_p85=9.0))  # an earlier layer: ignored
        rows.append(act(run_id, 0, 3, pre_p15=-1.0, pre_p50=0.0, pre_p85=1.0))
        rows.append(act(run_id, 100, 3, pre_p15=end[0], pre_p50=end[1], pre_p85=end[2]))
    frame = runs({"run_id": "p"}, {"run_id": "b", "model.norm": "batch"})
    return claims.check_percentile_drift(frame, stats(rows))


def test_percentile_drift() -> None:
    supported = _drift((2.0, 3.0, 4.0), (-1.0, 0.1, 1.0))
    assert supported.verdict == "supported"
    assert supported.measurements["drift of p15/p50/p85, no BN"] == pytest.approx(1.5)  # shift 3 / spread 2
    assert supported.measurements["drift of p15/p50/p85, BN"] == pytest.approx(0.05)
    assert _drift((-1.0, 0.1, 1.0), (2.0, 3.0, 4.0)).verdict == "not supported"
    assert _drift((-1.0, 0.3, 1.0), (-1.0, 0.2, 1.0)).verdict == "mixed"  # 1.5x: not clearly larger


# claim 5 ------------------------------------------------------------------------------------------


def _learning_rate(plain: dict[float, float], bn: dict[float, float], diverged: set[str] = frozenset()):  # type: ignore[no-untyped-def]
    specs, accuracy = [], {}
    for norm, table in (("none", plain), ("batch", bn)):
        for lr, value in table.items():
            run_id = f"{norm}-{lr:g}"
            status = "diverged" if run_id in diverged else "finished"
            specs.append({"run_id": run_id, "model.norm": norm, "optim.lr": lr, "status": status})
            accuracy[run_id] = value
    return claims.check_learning_rate(runs(*specs), metrics(accuracy))


def test_learning_rate() -> None:
    finding = _learning_rate({0.1: 0.9, 1.0: 0.8, 10.0: 0.1}, {0.1: 0.9, 1.0: 0.9, 10.0: 0.9})
    assert finding.verdict == "supported"
    assert finding.measurements["largest lr that trains, BN"] == 10.0
    assert finding.measurements["largest lr that trains, no BN"] == 1.0
    # a diverged run does not count, whatever its last accuracy
    assert _learning_rate({0.1: 0.9, 1.0: 0.8}, {0.1: 0.9, 1.0: 0.9}, {"batch-1"}).verdict == "not supported"
    assert _learning_rate({0.1: 0.9, 1.0: 0.8}, {0.1: 0.9, 1.0: 0.9}).verdict == "mixed"


# claim 6 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ratios, verdict",
    [((2.0, 4.0, 16.0), "supported"), ((0.5, 0.25, 0.1), "not supported"), ((2.0, 1.5, 3.0), "mixed")],
)
def test_bn_relu_explosion(ratios: tuple[float, ...], verdict: str) -> None:
    specs, rows = [], []
    for depth, ratio in zip((5, 10, 20), ratios):
        run_id = f"d{depth}"
        specs.append(
            {
                "run_id": run_id,
                "model.depth": depth,
                "model.activation": "relu",
                "model.norm": "batch",
                "data.batch_size": 32,
            }
        )
        rows += gradient_profile(run_id, [ratio, 1.0])
    finding = claims.check_bn_relu_explosion(runs(*specs), stats(rows))
    assert finding.verdict == verdict
    theory = finding.measurements["per-layer growth of grad_rms^2, theory (Yang et al. 2019, B=32)"]
    assert theory == pytest.approx(1.52, abs=0.01)


def test_bn_relu_growth_fit_recovers_a_known_rate() -> None:
    specs, rows = [], []
    for depth in (5, 10, 20):
        specs.append(
            {
                "run_id": f"d{depth}",
                "model.depth": depth,
                "model.activation": "relu",
                "model.norm": "batch",
                "data.batch_size": 32,
            }
        )
        rows += gradient_profile(f"d{depth}", [1.3 ** ((depth - 1) / 2), 1.0])
    finding = claims.check_bn_relu_explosion(runs(*specs), stats(rows))
    assert finding.measurements["per-layer growth of grad_rms^2, fitted"] == pytest.approx(1.3)


# claim 7 ------------------------------------------------------------------------------------------


def _weight_scale(pre_shift: float, weight_power: float, profile_power: float = 0.0):  # type: ignore[no-untyped-def]
    specs, rows = [], []
    for scale in (0.1, 1.0, 10.0):
        run_id = f"a{scale:g}"
        specs.append({"run_id": run_id, "model.norm": "batch", "model.weight_scale": scale})
        shift = pre_shift * math.log10(scale)
        for order, grad in ((2, 0.5 * scale**profile_power), (4, 1.0)):
            rows.append(
                act(
                    run_id,
                    0,
                    order,
                    pre_mean=shift,
                    pre_std=1.0,
                    pre_p15=-1 + shift,
                    pre_p50=shift,
                    pre_p85=1 + shift,
                    grad_rms=grad * 3.0 * scale,
                )
            )
        for order, layer in ((1, "fc1"), (3, "fc2"), (5, "out")):
            rows.append(
                row(run_id, 0, order, "weight", layer, weight_grad_norm=2.0 * 3.0 * scale * scale**weight_power)
            )
    return claims.check_weight_scale_invariance(runs(*specs), stats(rows))


def test_weight_scale_invariance() -> None:
    supported = _weight_scale(0.0, -1.0)  # stats identical, dL/dW ~ 1/a once the incoming gradient is divided out
    assert supported.verdict == "supported"
    assert supported.measurements["raw grad_rms, max rel. deviation, a=10 (output layer scaled too)"] == pytest.approx(
        9.0
    )
    assert _weight_scale(1.0, 0.0, profile_power=1.0).verdict == "not supported"
    assert _weight_scale(0.0, 0.0).verdict == "mixed"


# claim 8 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ratio, saturated, verdict", [(1e-3, 0.5, "supported"), (0.5, 0.0, "not supported"), (1e-3, 0.0, "mixed")]
)
def test_tanh(ratio: float, saturated: float, verdict: str) -> None:
    frame = runs(
        {"run_id": "t10", "model.activation": "tanh", "model.depth": 10},
        {"run_id": "tn", "model.activation": "tanh", "model.init": "small_gaussian", "model.init_std": 1.0},
    )
    rows = gradient_profile("t10", [ratio, 1.0]) + [act("tn", 0, 1, saturated_frac=saturated)]
    assert claims.check_tanh(frame, stats(rows)).verdict == verdict


# claim 9 ------------------------------------------------------------------------------------------


def _backward(mean_out: float, std_out: float, autograd_error: float = 1e-15):  # type: ignore[no-untyped-def]
    gradients = pd.DataFrame(
        [
            {
                "layer": "bn1",
                "step": 0,
                "mean_in": 0.05,
                "mean_out": mean_out,
                "x_hat_in": 0.1,
                "x_hat_out": 1e-5,
                "std_in": 1e-4,
                "std_out": std_out,
                "decomposition_error": 1e-7,
            }
        ]
    )
    return claims.check_bn_backward(gradients, autograd_error)


def test_bn_backward() -> None:
    assert _backward(1e-9, 1.0).verdict == "supported"
    mixed = _backward(1e-9, 1e-3)
    assert mixed.verdict == "mixed"
    assert "not standardized" in mixed.summary
    assert _backward(0.05, 1e-3).verdict == "not supported"
    assert _backward(1e-9, 1e-3, autograd_error=1e-2).verdict == "not supported"
