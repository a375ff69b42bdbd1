"""The nine checks of the explain study: stored frames in, a `ClaimResult` out.

Every key number is measured once per seed and summarized as a mean with a 95% t-interval
(`analysis.intervals`); a rule's condition holds only when the whole interval satisfies it.
Comparisons between BN and no BN are paired by seed (same seed, same data order, same initial
weights before BN), so e.g. the drift ratio is computed per seed and then summarized. Gradient
ratios span decades and are summarized on a log scale (geometric mean, multiplicative interval).
Thresholds are module constants; the rule sentences in `analysis.claims` quote them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..theory import bn_gradient_growth
from .claim_records import Claim, ClaimData, ClaimResult, KeyNumber, not_decided
from .intervals import Condition, Estimate, decide, estimate, exact
from .summary import activation_rows, gradient_ratio

__all__ = [
    "VANISHING_RATIO",
    "STANDARDIZED_TOLERANCE",
    "GAMMA_TOLERANCE",
    "SATURATION_FLOOR",
    "DRIFT_FACTOR",
    "TRAINED_ACCURACY",
    "INVARIANCE_TOLERANCE",
    "GRADIENT_INVARIANCE_TOLERANCE",
    "TANH_SATURATED",
    "BACKWARD_TOLERANCE",
    "DECOMPOSITION_TOLERANCE",
    "MEAN_REMOVED",
    "UNIT_STD_TOLERANCE",
    "select",
    "by_seed",
    "paired",
    "result_of",
    "check_vanishing",
    "check_bn_standardizes",
    "check_saturation",
    "check_percentile_drift",
    "check_learning_rate",
    "check_bn_relu_explosion",
    "check_weight_scale_invariance",
    "check_tanh",
    "check_bn_backward",
    "drift",
    "scale_profile",
]

#: First/last-layer grad_rms below this is "vanishing": the first layer learns >10x slower.
VANISHING_RATIO = 0.1
#: |mean| and |std - 1| of BN's output at init; eps = 1e-5 in float32 keeps them near 1e-3.
STANDARDIZED_TOLERANCE = 0.05
#: After training, pre_std / rms(gamma) within 25%: the spread of beta across units adds to the pooled std.
GAMMA_TOLERANCE = 0.25
#: A net whose units saturate less than 1% of the time has no saturation for BN to reduce.
SATURATION_FLOOR = 0.01
#: Plain drift must exceed BN's by 2x to count as clearly larger; between 1x and 2x is mixed.
DRIFT_FACTOR = 2.0
#: Test accuracy that counts as trained: 10 classes, so 0.5 is five times chance.
TRAINED_ACCURACY = 0.5
#: Pre-activation statistics across weight scales, in units of the reference layer's std (BN's eps
#: against a pre-BN variance ~1e-3 at scale 0.1 moves them by ~1%).
INVARIANCE_TOLERANCE = 0.05
#: Relative change of the gradient profile (grad_rms over the last layer's) across weight scales:
#: the output layer, which no BN follows, is scaled too, so only the profile can be invariant.
GRADIENT_INVARIANCE_TOLERANCE = 0.10
#: tanh "saturates" if at least a tenth of its units sit where tanh' < 5% of its maximum.
TANH_SATURATED = 0.10
#: The numpy backward pass against autograd in float64: only rounding should differ.
BACKWARD_TOLERANCE = 1e-8
#: The decomposition against the hook's float32 gradient on the real net: float32 rounding.
DECOMPOSITION_TOLERANCE = 1e-3
#: |batch mean| / rms of the gradient below this counts as removed (float32 sums of ~60 terms).
MEAN_REMOVED = 1e-3
#: "Normalized" like the forward pass would mean a per-unit batch std of the gradient near 1.
UNIT_STD_TOLERANCE = 0.2


# ------------------------------------------------------------------------------------------ helpers


def _spec_value(runs: pd.DataFrame, key: str) -> pd.Series:
    column = f"spec.{key}"
    if column in runs.columns:
        return runs[column]
    return pd.Series([None] * len(runs), index=runs.index, dtype=object)


def select(runs: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """Runs whose spec matches `where`; keys use '__' for dots, e.g. ``model__norm='batch'``."""
    mask = pd.Series(True, index=runs.index)
    for key, value in where.items():
        mask &= _spec_value(runs, key.replace("__", ".")) == value
    return runs[mask]


def _stats(layer_stats: pd.DataFrame, run_id: str) -> pd.DataFrame:
    return layer_stats[layer_stats["run_id"] == run_id]


def by_seed(runs: pd.DataFrame, value: Callable[[pd.DataFrame], float]) -> dict[int, float]:
    """``value(runs of one seed)`` for each seed in `runs` (column ``seed``), in seed order."""
    if runs.empty:
        return {}
    return {int(seed): float(value(group)) for seed, group in runs.groupby("seed", sort=True)}


def paired(a: dict[int, float], b: dict[int, float], combine: Callable[[float, float], float]) -> list[float]:
    """``combine(a[seed], b[seed])`` for every seed both hold, in seed order."""
    return [combine(a[s], b[s]) for s in sorted(set(a) & set(b))]


def _ratio_at(layer_stats: pd.DataFrame, final: bool = False) -> Callable[[pd.DataFrame], float]:
    def ratio(runs: pd.DataFrame) -> float:
        stats = _stats(layer_stats, runs["run_id"].iloc[0])
        if stats.empty:
            return math.nan
        return gradient_ratio(stats, int(stats["step"].max()) if final else 0)

    return ratio


def _depths(runs: pd.DataFrame) -> list[int]:
    return sorted(int(d) for d in _spec_value(runs, "model.depth").dropna().unique())


def result_of(
    claim: Claim,
    summary: str,
    conditions: list[Condition],
    keys: list[KeyNumber],
    details: dict[str, float],
    runs: pd.DataFrame,
) -> ClaimResult:
    missing = [c.label for c in conditions if not c.value.finite]
    if missing:
        reason = (
            f"{', '.join(dict.fromkeys(missing))} could not be measured (fewer than two activation layers "
            "recorded a gradient, or a run diverged)"
        )
        result = ClaimResult(
            claim, "mixed", False, summary, tuple(keys), tuple(conditions), details, tuple(runs["run_id"])
        )
        return not_decided(claim, reason, result)
    verdict, robust = decide(conditions)
    unsure = [c.label for c in conditions if c.outcome == "unsure"]
    note = f"not robust across seeds: the interval of {', '.join(unsure)} straddles its threshold" if unsure else ""
    return ClaimResult(
        claim, verdict, robust, summary, tuple(keys), tuple(conditions), details, tuple(runs["run_id"]), note
    )


# ------------------------------------------------------------------------------------- the claims


def check_vanishing(claim: Claim, data: ClaimData) -> ClaimResult:
    """Claim 1: without BN, sigmoid and tanh nets' first/last grad ratio is < 0.1 and falls with depth."""
    plain = select(data.runs, model__norm="none", model__init="pytorch_default")
    bn = select(data.runs, model__norm="batch", model__init="pytorch_default")
    conditions: list[Condition] = []
    keys: list[KeyNumber] = []
    details: dict[str, float] = {}
    parts = []
    for activation in ("sigmoid", "tanh"):
        chosen = select(plain, model__activation=activation)
        depths = _depths(chosen)
        if not depths:
            continue
        ratios = {d: by_seed(select(chosen, model__depth=d), _ratio_at(data.layer_stats)) for d in depths}
        for d in depths:
            details[f"grad ratio, {activation} depth {d}, no BN, init"] = estimate(ratios[d].values(), log=True).mean
            trained = by_seed(select(chosen, model__depth=d), _ratio_at(data.layer_stats, final=True))
            details[f"grad ratio, {activation} depth {d}, no BN, trained"] = estimate(trained.values(), log=True).mean
            with_bn = by_seed(select(bn, model__activation=activation, model__depth=d), _ratio_at(data.layer_stats))
            details[f"grad ratio, {activation} depth {d}, BN, init"] = estimate(with_bn.values(), log=True).mean
        deep, shallow = depths[-1], depths[0]
        deepest = estimate(ratios[deep].values(), log=True)
        label = f"first/last grad_rms ratio, {activation} depth {deep}, no BN, init"
        keys.append(KeyNumber(label, deepest))
        if deep >= 10:
            conditions.append(Condition(label, deepest, "<", VANISHING_RATIO))
        if deep != shallow:
            falls = estimate(paired(ratios[deep], ratios[shallow], lambda a, b: a / b), log=True)
            conditions.append(Condition(f"{activation} ratio at depth {deep} / at depth {shallow}", falls, "<", 1.0))
        parts.append(f"{activation} depth {deep}: {deepest.text()}")
        with_bn = by_seed(select(bn, model__activation=activation, model__depth=deep), _ratio_at(data.layer_stats))
        if with_bn:
            keys.append(KeyNumber(f"same with BN, {activation} depth {deep}", estimate(with_bn.values(), log=True)))
    summary = "First/last-layer grad_rms ratio at init without BN: " + ("; ".join(parts) or "no plain runs") + "."
    return result_of(claim, summary, conditions, keys[:5], details, plain)


def _bn_layer_numbers(runs: pd.DataFrame, layer_stats: pd.DataFrame) -> dict[str, float]:
    """One seed's BN-output statistics over every BN run given: worst cases over layers."""
    means, stds, reach, gamma = [], [], [], []
    for run in runs.to_dict("records"):
        stats = _stats(layer_stats, run["run_id"])
        acts = activation_rows(stats)
        first = acts[acts["step"] == 0]
        means += list(first["pre_mean"].abs())
        stds += list((first["pre_std"] - 1).abs())
        reach += list(np.minimum(-first["pre_min"], first["pre_max"]))
        last = int(stats["step"].max())
        width = float(run["spec.model.width"])
        final = acts[acts["step"] == last].sort_values("order")
        norms = stats[(stats["kind"] == "norm") & (stats["step"] == last)].sort_values("order")
        for pre_std, gamma_norm in zip(final["pre_std"], norms["bn_gamma_norm"]):
            gamma.append(abs(pre_std / (gamma_norm / math.sqrt(width)) - 1))
    return {
        "mean": max(means, default=math.nan),
        "std": max(stds, default=math.nan),
        "reach": min(reach, default=math.nan),
        "gamma": max(gamma, default=math.nan),
    }


def check_bn_standardizes(claim: Claim, data: ClaimData) -> ClaimResult:
    """Claim 2: BN's outputs have mean ~0 and std ~1 at init and reach beyond [-1, 1]; std ~ rms(gamma) trained."""
    bn = select(data.runs, model__norm="batch")
    per_seed = {s: _bn_layer_numbers(g, data.layer_stats) for s, g in bn.groupby("seed")} if len(bn) else {}

    def est(key: str) -> Estimate:
        return estimate([v[key] for v in per_seed.values()])

    labels = {
        "mean": "largest |mean| of a BN output, init",
        "std": "largest |std - 1| of a BN output, init",
        "reach": "smallest reach beyond 0 of a BN output (min of -min, max), init",
        "gamma": "largest |std / rms(gamma) - 1|, trained",
    }
    conditions = [
        Condition(labels["mean"], est("mean"), "<", STANDARDIZED_TOLERANCE),
        Condition(labels["std"], est("std"), "<", STANDARDIZED_TOLERANCE),
        Condition(labels["reach"], est("reach"), ">", 1.0),
        Condition(labels["gamma"], est("gamma"), "<", GAMMA_TOLERANCE),
    ]
    keys = [KeyNumber(labels[k], est(k)) for k in labels]
    summary = (
        f"At init every BN output has |mean| <= {est('mean').text()} and std within {est('std').text()} of 1, "
        f"and reaches at least {est('reach').text()} on both sides of 0 (not squashed into [-1, 1]); after training "
        f"its std follows rms(gamma) within {est('gamma').text()} (relative)."
    )
    return result_of(claim, summary, conditions, keys, {}, bn)


def _saturation(layer_stats: pd.DataFrame) -> Callable[[pd.DataFrame], float]:
    def saturated(runs: pd.DataFrame) -> float:
        acts = activation_rows(_stats(layer_stats, runs["run_id"].iloc[0]))
        return float(acts["saturated_frac"].mean()) if len(acts) else math.nan

    return saturated


_PAIR_KEYS = ("spec.model.activation", "spec.model.init", "spec.model.init_std", "spec.model.depth")


def _pair_label(key: tuple[Any, ...]) -> str:
    activation, init, init_std, depth = key
    scheme = f"N(0, {init_std:g}^2)" if init == "small_gaussian" else "default init"
    return f"{activation} depth {depth}, {scheme}"


def check_saturation(claim: Claim, data: ClaimData) -> ClaimResult:
    """Claim 3: in every pair whose plain net saturates >= 1%, BN's saturated fraction is lower (per seed)."""
    conditions, keys, details, parts = [], [], {}, []
    for key, group in data.runs.groupby(list(_PAIR_KEYS), sort=True):
        plain = by_seed(select(group, model__norm="none"), _saturation(data.layer_stats))
        bn = by_seed(select(group, model__norm="batch"), _saturation(data.layer_stats))
        if not plain or not bn:
            continue
        label = _pair_label(key)
        p, b = estimate(plain.values()), estimate(bn.values())
        details[f"saturated fraction, {label}, no BN"] = p.mean
        details[f"saturated fraction, {label}, BN"] = b.mean
        if p.mean >= SATURATION_FLOOR:
            drop = estimate(paired(plain, bn, lambda a, b: a - b))
            conditions.append(Condition(f"saturated fraction without minus with BN, {label}", drop, ">", 0.0))
            keys += [KeyNumber(f"saturated fraction, {label}, no BN", p), KeyNumber(f"same with BN, {label}", b)]
            parts.append(f"{label}: {p.text()} -> {b.text()}")
    if not conditions:
        reason = f"no net saturates >= {SATURATION_FLOOR:.0%} without BN, so there is nothing for BN to reduce"
        return not_decided(claim, reason, result_of(claim, "No saturating pair.", [], [], details, data.runs))
    summary = f"Saturated fraction without -> with BN (mean over layers and recorded steps): {'; '.join(parts)}."
    return result_of(claim, summary, conditions, keys[:5], details, data.runs)


def drift(stats: pd.DataFrame) -> float:
    """Drift of the last hidden activation input's p15/p50/p85 from the first to the last recorded step.

    max over the three percentiles of |p(last) - p(first)|, divided by the mean of the 85-15
    spreads at those two steps: scale-free (a pure shift of one spread scores 1).
    """
    acts = activation_rows(stats)
    if acts.empty:
        return math.nan
    last_layer = acts.loc[acts["order"].idxmax(), "layer"]
    rows = acts[acts["layer"] == last_layer].sort_values("step")
    first, last = rows.iloc[0], rows.iloc[-1]
    shift = max(abs(float(last[c]) - float(first[c])) for c in ("pre_p15", "pre_p50", "pre_p85"))
    spread = (float(first["pre_p85"] - first["pre_p15"]) + float(last["pre_p85"] - last["pre_p15"])) / 2
    return shift / spread if spread > 0 else math.inf


def check_percentile_drift(claim: Claim, data: ClaimData) -> ClaimResult:
    """Claim 4: the last hidden layer's input percentiles drift more than 2x as much without BN (per seed)."""

    def drift_of(runs: pd.DataFrame) -> float:
        return drift(_stats(data.layer_stats, runs["run_id"].iloc[0]))

    plain = by_seed(select(data.runs, model__norm="none"), drift_of)
    bn = by_seed(select(data.runs, model__norm="batch"), drift_of)
    p, b = estimate(plain.values(), log=True), estimate(bn.values(), log=True)
    ratio = estimate(paired(plain, bn, lambda a, c: a / c), log=True)
    label = "drift without BN / drift with BN"
    conditions = [Condition(label, ratio, ">", 1.0), Condition(label, ratio, ">", DRIFT_FACTOR)]
    keys = [
        KeyNumber("drift of p15/p50/p85, no BN (in 85-15 spreads)", p),
        KeyNumber("drift of p15/p50/p85, BN (in 85-15 spreads)", b),
        KeyNumber(label, ratio),
    ]
    summary = (
        f"The last hidden layer's input percentiles drift {p.text()} spreads without BN and {b.text()} with BN "
        f"between the first and the last recorded step: {ratio.text()}x as much without BN."
    )
    return result_of(claim, summary, conditions, keys, {}, data.runs)


def _final_accuracy(metrics: pd.DataFrame) -> Callable[[pd.DataFrame], float]:
    def accuracy(runs: pd.DataFrame) -> float:
        run = runs.iloc[0]
        if run["status"] != "finished":
            return math.nan  # a diverged run did not train, whatever its last evaluation said
        rows = metrics[(metrics["run_id"] == run["run_id"]) & (metrics["name"] == "test_accuracy")]
        return float(rows.sort_values("step")["value"].iloc[-1]) if len(rows) else math.nan

    return accuracy


def _trains(accuracy: Estimate) -> str:
    """'holds' when every seed trained (interval above the bar), 'fails' when it surely did not, else 'unsure'."""
    if not accuracy.finite:
        return "fails"  # a diverged seed
    return accuracy.satisfies(">", TRAINED_ACCURACY)


def learning_rate_table(runs: pd.DataFrame, metrics: pd.DataFrame) -> dict[str, dict[float, Estimate]]:
    """Final test accuracy per norm ('none', 'batch') and learning rate, across seeds (NaN if one diverged)."""
    table: dict[str, dict[float, Estimate]] = {}
    for norm in ("none", "batch"):
        chosen = select(runs, model__norm=norm)
        table[norm] = {
            float(lr): estimate(by_seed(group, _final_accuracy(metrics)).values())
            for lr, group in chosen.groupby("spec.optim.lr", sort=True)
        }
    return table


def _rate(lr: float) -> str:
    return f"{lr:g}" if lr > 0 else "none of the swept rates"


def check_learning_rate(claim: Claim, data: ClaimData) -> ClaimResult:
    """Claim 5: the largest rate at which every seed trains (test accuracy > 0.5) is higher with BN."""
    table = learning_rate_table(data.runs, data.metrics)
    details = {
        f"test accuracy, lr {lr:g}, {'BN' if norm == 'batch' else 'no BN'}": e.mean
        for norm, row in table.items()
        for lr, e in row.items()
    }

    def largest(norm: str, accept: Callable[[Estimate], bool]) -> float:
        return max((lr for lr, e in table[norm].items() if accept(e)), default=0.0)

    sure = {n: largest(n, lambda e: _trains(e) == "holds") for n in table}
    maybe = {n: largest(n, lambda e: _trains(e) != "fails") for n in table}
    point = {n: largest(n, lambda e: e.finite and e.mean > TRAINED_ACCURACY) for n in table}
    keys = []
    for lr in sorted({point["none"], point["batch"]} - {0.0}):
        for norm, name in (("none", "no BN"), ("batch", "BN")):
            if lr in table[norm]:
                value = table[norm][lr]
                diverged = "" if value.finite else " (a seed diverged)"
                keys.append(KeyNumber(f"test accuracy, lr {lr:g}, {name}{diverged}", value))
    summary = (
        f"Largest learning rate at which every seed trains (test accuracy > {TRAINED_ACCURACY}): "
        f"{_rate(point['none'])} without BN, {_rate(point['batch'])} with BN."
    )
    runs = tuple(data.runs["run_id"])
    if point["none"] == 0.0 or point["batch"] == 0.0:
        who = "the plain net" if point["none"] == 0.0 else "the BN net"
        reason = f"{who} trains at none of the swept rates, so the sweep cannot show which tolerates higher rates"
        return not_decided(claim, reason, ClaimResult(claim, "mixed", False, summary, tuple(keys[:5]), run_ids=runs))
    if sure["batch"] > maybe["none"]:
        verdict, robust = "supported", True
    elif maybe["batch"] <= sure["none"]:
        verdict, robust = "not supported", True
    else:
        verdict = "mixed" if point["batch"] >= point["none"] else "not supported"
        robust = False
    note = "" if robust else "not robust across seeds: at some rate the accuracy interval straddles the bar"
    return ClaimResult(claim, verdict, robust, summary, tuple(keys[:5]), (), details, runs, note)  # type: ignore[arg-type]


def check_bn_relu_explosion(claim: Claim, data: ClaimData) -> ClaimResult:
    """Claim 6: deep BN-ReLU nets' gradient grows toward the input at init, per layer by about lambda(B)."""
    bn = select(data.runs, model__norm="batch")
    plain = select(data.runs, model__norm="none")
    depths = _depths(bn)
    ratios = {d: by_seed(select(bn, model__depth=d), _ratio_at(data.layer_stats)) for d in depths}
    seeds = sorted(set.intersection(*(set(r) for r in ratios.values()))) if ratios else []
    growth = []
    for seed in seeds:
        ok = [d for d in depths if ratios[d][seed] > 0 and math.isfinite(ratios[d][seed])]
        if len(ok) >= 2:
            slope = np.polyfit(ok, [2 * math.log(ratios[d][seed]) for d in ok], 1)[0]
            growth.append(float(math.exp(slope)))
    batch = int(_spec_value(bn, "data.batch_size").iloc[0]) if len(bn) else 32
    activation = str(_spec_value(bn, "model.activation").iloc[0]) if len(bn) else "relu"
    theory = bn_gradient_growth(activation, batch)
    fitted = estimate(growth, log=True)
    details = {
        f"grad ratio first/last, BN-ReLU depth {d}, init": estimate(r.values(), log=True).mean
        for d, r in ratios.items()
    }
    for d in _depths(plain):
        details[f"grad ratio first/last, plain ReLU depth {d}, init"] = estimate(
            by_seed(select(plain, model__depth=d), _ratio_at(data.layer_stats)).values(), log=True
        ).mean
    conditions, keys = [], [KeyNumber("per-layer growth of grad_rms^2, fitted", fitted)]
    keys.append(KeyNumber(f"per-layer growth, theory lambda(B={batch}) (Yang et al. 2019)", exact(theory)))
    if depths:
        deepest = estimate(ratios[depths[-1]].values(), log=True)
        label = f"first/last grad_rms ratio, BN-ReLU depth {depths[-1]}, init"
        conditions.append(Condition(label, deepest, ">", 1.0))
        keys.append(KeyNumber(label, deepest))
        same_plain = select(plain, model__depth=depths[-1])
        if len(same_plain):
            keys.append(
                KeyNumber(
                    f"same without BN (He init), depth {depths[-1]}",
                    estimate(by_seed(same_plain, _ratio_at(data.layer_stats)).values(), log=True),
                )
            )
    conditions.append(Condition("per-layer growth of grad_rms^2, fitted", fitted, ">", 1.0))
    summary = (
        f"At init the BN-ReLU gradient grows toward the input by {fitted.text()} per layer (squared rms; "
        f"theory {theory:.3g} for batch {batch}): BN itself makes the gradient explode with depth."
    )
    return result_of(claim, summary, conditions, keys, details, data.runs)


_PRE_COLUMNS = ("pre_mean", "pre_std", "pre_p15", "pre_p50", "pre_p85")


def scale_profile(stats: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(activation rows at step 0, grad_rms per layer / last layer's, weight grad norms / last grad_rms).

    The weight norms are those of every weight row but the last (the output layer, which feeds no BN).
    """
    acts = activation_rows(stats[stats["step"] == 0]).sort_values("order")
    weights = stats[(stats["step"] == 0) & (stats["kind"] == "weight")].sort_values("order")
    last_grad = float(acts["grad_rms"].iloc[-1])
    profile = acts["grad_rms"].to_numpy() / last_grad
    feeding_bn = weights["weight_grad_norm"].to_numpy()[:-1] / last_grad
    return acts, profile, feeding_bn


def _scale_deviations(runs: pd.DataFrame, layer_stats: pd.DataFrame) -> dict[str, float]:
    """One seed's worst deviations from weight scale 1 over the other scales."""
    profiles = {}
    for run in runs.to_dict("records"):
        profiles[float(run["spec.model.weight_scale"])] = scale_profile(_stats(layer_stats, run["run_id"]))
    if 1.0 not in profiles:
        return {"pre": math.nan, "grad": math.nan, "weight": math.nan}
    ref_acts, ref_profile, ref_weights = profiles[1.0]
    ref_std = ref_acts["pre_std"].to_numpy()
    out = {"pre": 0.0, "grad": 0.0, "weight": 0.0}
    for scale, (acts, profile, weights) in profiles.items():
        if scale == 1.0 or len(acts) != len(ref_acts):
            continue
        pre = max(float(np.max(np.abs(acts[c].to_numpy() - ref_acts[c].to_numpy()) / ref_std)) for c in _PRE_COLUMNS)
        out["pre"] = max(out["pre"], pre)
        out["grad"] = max(out["grad"], float(np.max(np.abs(profile / ref_profile - 1))))
        if len(weights) == len(ref_weights) and len(weights):
            out["weight"] = max(out["weight"], float(np.max(np.abs(weights * scale / ref_weights - 1))))
    return out


def check_weight_scale_invariance(claim: Claim, data: ClaimData) -> ClaimResult:
    """Claim 7: with BN, activation inputs and the gradient profile do not change with weight scale a; a x dL/dW does not either."""
    bn = select(data.runs, model__norm="batch")
    plain = select(data.runs, model__norm="none")
    per_seed = {int(s): _scale_deviations(g, data.layer_stats) for s, g in bn.groupby("seed")} if len(bn) else {}
    plain_seed = (
        {int(s): _scale_deviations(g, data.layer_stats) for s, g in plain.groupby("seed")} if len(plain) else {}
    )

    def est(values: dict[int, dict[str, float]], key: str) -> Estimate:
        return estimate([v[key] for v in values.values()])

    labels = {
        "pre": "BN: largest change of activation-input stats across a (in stds)",
        "grad": "BN: largest relative change of the gradient profile across a",
        "weight": "BN: largest relative change of a x dL/dW across a",
    }
    tolerances = {
        "pre": INVARIANCE_TOLERANCE,
        "grad": GRADIENT_INVARIANCE_TOLERANCE,
        "weight": GRADIENT_INVARIANCE_TOLERANCE,
    }
    conditions = [Condition(labels[k], est(per_seed, k), "<", tolerances[k]) for k in labels]
    keys = [KeyNumber(labels[k], est(per_seed, k)) for k in labels]
    if plain_seed:
        keys.append(
            KeyNumber("no BN: largest relative change of the gradient profile across a", est(plain_seed, "grad"))
        )
    scales = ", ".join(f"{a:g}" for a in sorted(_spec_value(data.runs, "model.weight_scale").dropna().unique()))
    summary = (
        f"With BN, scaling the weights by a in {{{scales}}} moves the activation inputs' statistics by at most "
        f"{est(per_seed, 'pre').text()} stds and the gradient profile by {est(per_seed, 'grad').text()} (relative); "
        + (f"without BN the profile changes by {est(plain_seed, 'grad').text()}." if plain_seed else "")
    )
    return result_of(claim, summary, conditions, keys, {}, data.runs)


def check_tanh(claim: Claim, data: ClaimData) -> ClaimResult:
    """Claim 8: tanh nets of depth >= 10 have ratio < 0.1 at init, and a tanh net with N(0,1) weights saturates >= 10%."""
    conditions, keys = [], []
    for activation in ("tanh", "sigmoid"):
        plain = select(data.runs, model__norm="none", model__activation=activation)
        default = select(plain, model__init="pytorch_default")
        depths = [d for d in _depths(default) if d >= 10]
        badly = select(plain, model__init="small_gaussian")
        saturated = estimate(by_seed(badly, _saturation(data.layer_stats)).values())
        if depths:
            ratio = estimate(
                by_seed(select(default, model__depth=depths[-1]), _ratio_at(data.layer_stats)).values(), log=True
            )
            label = f"first/last grad_rms ratio, {activation} depth {depths[-1]}, no BN, init"
            keys.append(KeyNumber(label, ratio))
            if activation == "tanh":
                conditions.append(Condition(label, ratio, "<", VANISHING_RATIO))
        label = f"saturated fraction, {activation}, N(0,1) weights, no BN"
        keys.append(KeyNumber(label, saturated))
        if activation == "tanh":
            conditions.append(Condition(label, saturated, ">", TANH_SATURATED))
    summary = "Without BN: " + "; ".join(f"{k.label}: {k.value.text()}" for k in keys) + "."
    return result_of(claim, summary, conditions, keys, {}, data.runs)


def check_bn_backward(claim: Claim, data: ClaimData) -> ClaimResult:
    """Claim 9: BN's backward pass removes the gradient's batch mean; is it also standardized (std ~1)?"""
    g = data.backward
    if g is None or data.autograd_error is None:
        return not_decided(claim, "BN's backward pass was not measured in this run")

    def one(values: Iterable[float]) -> Estimate:
        return exact(float(np.mean(list(values))))

    error = exact(float(data.autograd_error))
    decomposition = exact(float(g["decomposition_error"].max()))
    mean_in, mean_out = one(g["mean_in"]), one(g["mean_out"])
    std_in, std_out = one(g["std_in"]), one(g["std_out"])
    conditions = [
        Condition("numpy backward vs autograd, max rel. error (float64)", error, "<", BACKWARD_TOLERANCE),
        Condition("decomposition vs hook gradient, max rel. error", decomposition, "<", DECOMPOSITION_TOLERANCE),
        Condition("|batch mean| / rms of the gradient leaving BN", mean_out, "<", MEAN_REMOVED),
        Condition("|batch mean| / rms of the gradient arriving at BN", mean_in, ">", MEAN_REMOVED),
        Condition(
            "|per-unit std of the gradient leaving BN - 1|", exact(abs(std_out.mean - 1)), "<", UNIT_STD_TOLERANCE
        ),
    ]
    keys = [
        KeyNumber("|batch mean| / rms of the gradient arriving at BN", mean_in),
        KeyNumber("|batch mean| / rms of the gradient leaving BN", mean_out),
        KeyNumber("per-unit batch std of the gradient, arriving", std_in),
        KeyNumber("per-unit batch std of the gradient, leaving", std_out),
        KeyNumber("numpy backward vs autograd, max rel. error", error),
    ]
    details = {
        "|component along x_hat| / rms, arriving": float(g["x_hat_in"].mean()),
        "|component along x_hat| / rms, leaving": float(g["x_hat_out"].mean()),
        "decomposition vs hook gradient, max rel. error (float32)": decomposition.mean,
    }
    standardized = abs(std_out.mean - 1) < UNIT_STD_TOLERANCE
    summary = (
        f"BN's backward pass removes the gradient's batch mean ({mean_in.text()} -> {mean_out.text()} of its rms) "
        f"and its component along x_hat, then scales by gamma/sigma; the per-unit batch std goes {std_in.text()} -> "
        f"{std_out.text()}, so the gradients are {'standardized' if standardized else 're-centred but not standardized'}."
    )
    result = result_of(claim, summary, conditions, keys, details, data.runs)
    return ClaimResult(claim, result.verdict, result.robust, summary, result.key_numbers, result.conditions, details,
                       (), "one deterministic measurement (no seed sweep)")  # fmt: skip
