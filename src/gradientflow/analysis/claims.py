"""The claims `gradientflow explain` checks, as pure functions from stored frames to `Finding`s.

Each `check_*` takes the frames `Store` returns for one experiment's runs (``runs_frame`` rows,
``layer_stats_frame``, ``metrics_frame``), measures a few numbers, and decides the verdict with the
rule written in its code and stated in the Finding's `rule`. The summary sentence is generated from
the same numbers, so a changed measurement changes the words. Thresholds are module constants.

The claims come from a Q&A answer on how batch normalization "resolves" vanishing gradients
(tests/../shared/seed) and from Ioffe & Szegedy (2015), which it quotes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..records import Finding, Verdict
from ..theory import bn_gradient_growth
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
    "verdict_from",
    "check_vanishing",
    "check_bn_standardizes",
    "check_saturation",
    "check_percentile_drift",
    "check_learning_rate",
    "check_bn_relu_explosion",
    "check_weight_scale_invariance",
    "check_tanh",
    "check_bn_backward",
]

#: First/last-layer grad_rms below this is "vanishing": the first layer learns >10x slower.
VANISHING_RATIO = 0.1
#: |mean| and |std - 1| of BN's output at init; eps = 1e-5 and float32 keep it near 1e-3, the
#: percentile subsample adds nothing here, so 5% is generous yet far from any squashing.
STANDARDIZED_TOLERANCE = 0.05
#: After training, pre_std / rms(gamma) within 25%: the spread of beta across units adds to the
#: pooled std, so the two agree only roughly.
GAMMA_TOLERANCE = 0.25
#: A net whose units saturate less than 1% of the time has no saturation for BN to reduce.
SATURATION_FLOOR = 0.01
#: Plain drift must exceed BN's by 2x to count as clearly larger; between 1x and 2x is mixed.
DRIFT_FACTOR = 2.0
#: Test accuracy that counts as trained: 10 classes, so 0.5 is five times chance.
TRAINED_ACCURACY = 0.5
#: Pre-activation statistics across weight scales, in units of the reference layer's std: BN's
#: eps = 1e-5 against a pre-BN variance ~1e-3 at scale 0.1 moves them by ~1%.
INVARIANCE_TOLERANCE = 0.05
#: Relative change of the gradient profile (per-layer grad_rms over the last layer's) across weight
#: scales. The output layer, which no BN follows, is scaled too and changes the incoming gradient's
#: direction, so only the profile (not the raw gradient) can be invariant, and only to ~10%.
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


def verdict_from(conditions: Iterable[bool]) -> Verdict:
    """'supported' if every condition holds, 'not supported' if none does, else 'mixed'."""
    values = [bool(c) for c in conditions]
    if values and all(values):
        return "supported"
    if not any(values):
        return "not supported"
    return "mixed"


def _spec_value(runs: pd.DataFrame, key: str) -> pd.Series:
    column = f"spec.{key}"
    if column in runs.columns:
        return runs[column]
    return pd.Series([None] * len(runs), index=runs.index, dtype=object)


def _select(runs: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """Runs whose spec matches `where`; keys use '__' for dots, e.g. model__norm='batch'."""
    mask = pd.Series(True, index=runs.index)
    for key, value in where.items():
        mask &= _spec_value(runs, key.replace("__", ".")) == value
    return runs[mask]


def _stats(layer_stats: pd.DataFrame, run_id: str) -> pd.DataFrame:
    return layer_stats[layer_stats["run_id"] == run_id]


def _geomean(values: Iterable[float]) -> float:
    logs = [math.log(v) for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(logs) / len(logs)) if logs else math.nan


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _g(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.3g}"


def _finding(
    claim_id: int,
    claim: str,
    experiment: str,
    rule: str,
    measurements: Mapping[str, float],
    verdict: Verdict,
    summary: str,
    runs: pd.DataFrame,
) -> Finding:
    clean = {key: float(value) for key, value in measurements.items()}
    return Finding(claim_id, claim, experiment, rule, clean, verdict, summary, tuple(runs["run_id"]))


def _decreasing(values: list[float]) -> bool:
    return len(values) >= 2 and all(b < a for a, b in zip(values, values[1:]))


def _increasing(values: list[float]) -> bool:
    return len(values) >= 2 and all(b > a for a, b in zip(values, values[1:]))


def _ratios_by_depth(runs: pd.DataFrame, layer_stats: pd.DataFrame, final: bool = False) -> dict[int, float]:
    """Geometric mean over seeds of the first/last grad ratio per depth, at step 0 or the last step."""
    out: dict[int, list[float]] = {}
    for run in runs.to_dict("records"):
        stats = _stats(layer_stats, run["run_id"])
        if stats.empty:
            continue
        step = int(stats["step"].max()) if final else 0
        out.setdefault(int(run["spec.model.depth"]), []).append(gradient_ratio(stats, step))
    return {depth: _geomean(values) for depth, values in sorted(out.items())}


# ------------------------------------------------------------------------------------- the claims


def check_vanishing(runs: pd.DataFrame, layer_stats: pd.DataFrame) -> Finding:
    """Claim 1: without BN, sigmoid and tanh nets have vanishing gradients (ratio by depth)."""
    measurements: dict[str, float] = {}
    conditions: list[bool] = []
    parts: list[str] = []
    plain = _select(runs, model__norm="none", model__init="pytorch_default")
    for activation in ("sigmoid", "tanh"):
        chosen = _select(plain, model__activation=activation)
        if chosen.empty:
            continue
        init, final = _ratios_by_depth(chosen, layer_stats), _ratios_by_depth(chosen, layer_stats, final=True)
        for depth in init:
            measurements[f"grad ratio, {activation} depth {depth}, no BN, init"] = init[depth]
            measurements[f"grad ratio, {activation} depth {depth}, no BN, trained"] = final[depth]
        deep = [init[d] < VANISHING_RATIO for d in init if d >= 10]
        conditions += [all(deep) and bool(deep), _decreasing(list(init.values()))]
        shown = ", ".join(f"depth {d}: {_g(init[d])} -> {_g(final[d])}" for d in init)
        parts.append(f"{activation} ({shown})")
    for spec in _select(runs, model__norm="batch", model__init="pytorch_default").to_dict("records"):
        stats = _stats(layer_stats, spec["run_id"])
        label = f"grad ratio, {spec['spec.model.activation']} depth {spec['spec.model.depth']}, BN, init (context)"
        measurements[label] = gradient_ratio(stats, 0)
    verdict = verdict_from(conditions)
    summary = f"First/last-layer grad_rms without BN, init -> trained: {'; '.join(parts) or 'no plain runs'}."
    rule = (
        f"per activation: every net of depth >= 10 has ratio < {VANISHING_RATIO} at init, and the ratio "
        "decreases with depth; all conditions -> supported, none -> not supported, else mixed"
    )
    claim = "Without BN, sigmoid and tanh networks have vanishing gradients, more so the deeper they are."
    return _finding(
        1, claim, "plain MLPs, width 100, PyTorch default init, SGD lr 0.1", rule, measurements, verdict, summary, plain
    )


def check_bn_standardizes(runs: pd.DataFrame, layer_stats: pd.DataFrame) -> Finding:
    """Claim 2: BN standardizes pre-activations (mean ~ beta, std ~ gamma), it does not squash."""
    bn = _select(runs, model__norm="batch")
    means, stds, lows, highs, beyond, gamma_dev = [], [], [], [], [], []
    for run in bn.to_dict("records"):
        stats = _stats(layer_stats, run["run_id"])
        acts = activation_rows(stats)
        first = acts[acts["step"] == 0]
        means += list(first["pre_mean"].abs())
        stds += list((first["pre_std"] - 1).abs())
        lows.append(float(first["pre_min"].min()))
        highs.append(float(first["pre_max"].max()))
        beyond += list((first["pre_min"] < -1) & (first["pre_max"] > 1))
        last = int(stats["step"].max())
        width = float(run["spec.model.width"])
        final_acts = acts[acts["step"] == last].sort_values("order")
        norms = stats[(stats["kind"] == "norm") & (stats["step"] == last)].sort_values("order")
        for pre_std, gamma_norm in zip(final_acts["pre_std"], norms["bn_gamma_norm"]):
            gamma_dev.append(abs(pre_std / (gamma_norm / math.sqrt(width)) - 1))
    m = {
        "max |pre_mean| after BN, init": max(means, default=math.nan),
        "max |pre_std - 1| after BN, init": max(stds, default=math.nan),
        "smallest pre_min after BN, init": min(lows, default=math.nan),
        "largest pre_max after BN, init": max(highs, default=math.nan),
        "fraction of BN layers reaching beyond [-1, 1], init": _mean(map(float, beyond)),
        "median |pre_std / rms(gamma) - 1|, trained": float(np.median(gamma_dev)) if gamma_dev else math.nan,
        "max |pre_std / rms(gamma) - 1|, trained": max(gamma_dev, default=math.nan),
    }
    conditions = [
        m["max |pre_mean| after BN, init"] < STANDARDIZED_TOLERANCE,
        m["max |pre_std - 1| after BN, init"] < STANDARDIZED_TOLERANCE,
        m["fraction of BN layers reaching beyond [-1, 1], init"] == 1.0,
        m["max |pre_std / rms(gamma) - 1|, trained"] < GAMMA_TOLERANCE,
    ]
    summary = (
        f"At init BN's outputs have |mean| <= {_g(m['max |pre_mean| after BN, init'])} and std within "
        f"{_g(m['max |pre_std - 1| after BN, init'])} of 1, ranging from {_g(m['smallest pre_min after BN, init'])} "
        f"to {_g(m['largest pre_max after BN, init'])} ({m['fraction of BN layers reaching beyond [-1, 1], init']:.0%} of layers "
        f"beyond [-1, 1]); after training pre_std differs from rms(gamma) by at most {_g(m['max |pre_std / rms(gamma) - 1|, trained'])} (relative)."
    )
    rule = (
        f"at init every BN layer has |pre_mean| < {STANDARDIZED_TOLERANCE}, |pre_std - 1| < {STANDARDIZED_TOLERANCE} and "
        f"values below -1 and above 1; after training |pre_std / rms(gamma) - 1| < {GAMMA_TOLERANCE}; "
        "all -> supported, none -> not supported, else mixed"
    )
    claim = "BN standardizes each unit's pre-activation over the batch (mean ~ beta, std ~ gamma); it does not squash into [0, 1] or [-1, 1]."
    return _finding(
        2,
        claim,
        "every BN run of the study (activation inputs = BN outputs)",
        rule,
        m,
        verdict_from(conditions),
        summary,
        bn,
    )


def _saturation(layer_stats: pd.DataFrame, run_id: str) -> float:
    acts = activation_rows(_stats(layer_stats, run_id))
    return float(acts["saturated_frac"].mean()) if len(acts) else math.nan


_PAIR_KEYS = ("spec.model.activation", "spec.model.init", "spec.model.init_std", "spec.model.depth")


def _pair_label(key: tuple[Any, ...]) -> str:
    activation, init, init_std, depth = key
    scheme = f"N(0, {init_std:g}^2)" if init == "small_gaussian" else init
    return f"{activation} depth {depth}, {scheme}"


def check_saturation(runs: pd.DataFrame, layer_stats: pd.DataFrame) -> Finding:
    """Claim 3: BN reduces the fraction of saturated units (same init and data, with vs without)."""
    frame = runs.assign(saturated=[_saturation(layer_stats, r) for r in runs["run_id"]])
    m: dict[str, float] = {}
    conditions, parts = [], []
    for key, group in frame.groupby(list(_PAIR_KEYS), sort=True):
        by_norm = group.groupby("spec.model.norm")["saturated"].mean()
        if not {"none", "batch"} <= set(by_norm.index):
            continue
        plain, bn = float(by_norm["none"]), float(by_norm["batch"])
        label = _pair_label(key)
        m[f"saturated fraction, {label}, no BN"] = plain
        m[f"saturated fraction, {label}, BN"] = bn
        parts.append(f"{label}: {plain:.1%} -> {bn:.1%}")
        if plain >= SATURATION_FLOOR:
            conditions.append(bn < plain)
    verdict = verdict_from(conditions) if conditions else "mixed"
    tested = f"{len(conditions)} of {len(parts)} pairs saturate without BN (>= {SATURATION_FLOOR:.0%})"
    summary = (
        f"Saturated fraction without -> with BN (mean over layers and recorded steps): {'; '.join(parts)}; {tested}."
    )
    rule = (
        f"among pairs whose plain net saturates >= {SATURATION_FLOOR:.0%}, BN's fraction is lower: in all -> supported, "
        "in none -> not supported, some -> mixed; no saturating pair -> mixed (nothing to test)"
    )
    claim = "BN reduces the fraction of saturated units."
    return _finding(
        3,
        claim,
        "sigmoid/tanh MLPs with and without BN, PyTorch default and N(0,1) init",
        rule,
        m,
        verdict,
        summary,
        runs,
    )


def _drift(stats: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """Drift of the last hidden activation input's p15/p50/p85 from the first to the last recorded step.

    max over the three percentiles of |p(last) - p(first)|, divided by the mean of the 85-15
    spreads at those two steps: scale-free, and symmetric in time (a pure widening from s to S
    scores (S - s) / (S + s) < 1, a pure shift of one spread scores 1).
    """
    acts = activation_rows(stats)
    last_layer = acts.loc[acts["order"].idxmax(), "layer"]
    rows = acts[acts["layer"] == last_layer].sort_values("step")
    first, last = rows.iloc[0], rows.iloc[-1]
    columns = ("pre_p15", "pre_p50", "pre_p85")
    shift = max(abs(float(last[c]) - float(first[c])) for c in columns)
    spread = (float(first["pre_p85"] - first["pre_p15"]) + float(last["pre_p85"] - last["pre_p15"])) / 2
    values = {f"{c} {when}": float(row[c]) for c in columns for when, row in (("first", first), ("last", last))}
    return (shift / spread if spread > 0 else math.inf), values


def check_percentile_drift(runs: pd.DataFrame, layer_stats: pd.DataFrame) -> Finding:
    """Claim 4: the last hidden layer's input distribution drifts during training without BN, not with it."""
    m: dict[str, float] = {}
    drift: dict[str, float] = {}
    for norm, label in (("none", "no BN"), ("batch", "BN")):
        values, seen = [], {}
        for run_id in _select(runs, model__norm=norm)["run_id"]:
            value, seen = _drift(_stats(layer_stats, run_id))
            values.append(value)
        drift[norm] = _mean(values)
        m[f"drift of p15/p50/p85, {label}"] = drift[norm]
        for key, value in seen.items():  # the last seed's percentiles, to show the shape
            m[f"{key}, {label}"] = value
    plain, bn = drift.get("none", math.nan), drift.get("batch", math.nan)
    verdict: Verdict = "supported" if plain > DRIFT_FACTOR * bn else ("not supported" if not plain > bn else "mixed")
    summary = (
        f"The last hidden layer's input percentiles drift {_g(plain)} spreads without BN and {_g(bn)} with BN "
        f"between the first and the last recorded step ({_g(plain / bn if bn else math.inf)}x)."
    )
    rule = (
        "drift = max over p15/p50/p85 of |p(last) - p(first)| / mean 85-15 spread at those steps, mean over seeds; "
        f"plain > {DRIFT_FACTOR:g} x BN -> supported; plain <= BN -> not supported; else mixed"
    )
    claim = "BN keeps units out of the saturated regime during training: their input distribution stays put (Ioffe & Szegedy 2015, Fig. 1)."
    return _finding(
        4, claim, "3 x 100 sigmoid MLP, small Gaussian init, with and without BN", rule, m, verdict, summary, runs
    )


def _final_accuracy(metrics: pd.DataFrame, run_id: str) -> float:
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["name"] == "test_accuracy")]
    return float(rows.sort_values("step")["value"].iloc[-1]) if len(rows) else math.nan


def check_learning_rate(runs: pd.DataFrame, metrics: pd.DataFrame) -> Finding:
    """Claim 5: BN tolerates higher learning rates (largest lr that trains, with vs without)."""
    m: dict[str, float] = {}
    largest: dict[str, float] = {}
    for norm, label in (("none", "no BN"), ("batch", "BN")):
        chosen = _select(runs, model__norm=norm)
        good = []
        for lr, group in chosen.groupby("spec.optim.lr", sort=True):
            accuracies = [_final_accuracy(metrics, r) for r in group["run_id"]]
            statuses = list(group["status"])
            m[f"test accuracy, lr {lr:g}, {label}"] = _mean(accuracies) if "diverged" not in statuses else math.nan
            m[f"diverged runs, lr {lr:g}, {label}"] = float(statuses.count("diverged"))
            if all(s == "finished" for s in statuses) and all(a > TRAINED_ACCURACY for a in accuracies):
                good.append(float(lr))
        largest[norm] = max(good, default=0.0)
        m[f"largest lr that trains, {label}"] = largest[norm]
    plain, bn = largest["none"], largest["batch"]
    verdict: Verdict = "supported" if bn > plain else ("mixed" if bn == plain else "not supported")

    def shown(lr: float) -> str:
        return f"{lr:g}" if lr > 0 else "none of the swept rates"

    summary = f"Largest learning rate that trains (no divergence, test accuracy > {TRAINED_ACCURACY}): {shown(plain)} without BN, {shown(bn)} with BN."
    rule = f"largest lr with every seed finished and test accuracy > {TRAINED_ACCURACY}: BN's > plain's -> supported; equal -> mixed; smaller -> not supported"
    claim = "BN tolerates higher learning rates."
    return _finding(5, claim, "learning-rate sweep with and without BN", rule, m, verdict, summary, runs)


def check_bn_relu_explosion(runs: pd.DataFrame, layer_stats: pd.DataFrame) -> Finding:
    """Claim 6: BN does not make exploding gradients impossible (deep BN-ReLU MLP at init)."""
    ratios = _ratios_by_depth(runs, layer_stats)
    m = {f"grad ratio first/last, BN-ReLU depth {d}, init": r for d, r in ratios.items()}
    depths = [d for d, r in ratios.items() if r > 0 and math.isfinite(r)]
    measured = math.nan
    if len(depths) >= 2:
        slope = np.polyfit(depths, [2 * math.log(ratios[d]) for d in depths], 1)[0]
        measured = float(math.exp(slope))
    activation = str(_spec_value(runs, "model.activation").iloc[0]) if len(runs) else "relu"
    batch = int(_spec_value(runs, "data.batch_size").iloc[0]) if len(runs) else 32
    theory = bn_gradient_growth(activation, batch)
    m["per-layer growth of grad_rms^2, fitted"] = measured
    m[f"per-layer growth of grad_rms^2, theory (Yang et al. 2019, B={batch})"] = theory
    m["relative disagreement fitted vs theory"] = (
        abs(measured - theory) / theory if math.isfinite(measured) else math.nan
    )
    values = list(ratios.values())
    conditions = [bool(values) and all(r > 1 for r in values), _increasing(values)]
    shown = ", ".join(f"depth {d}: {_g(r)}" for d, r in ratios.items())
    summary = (
        f"At init the gradient grows toward the input ({shown}); fitting log(ratio^2) against depth gives "
        f"{_g(measured)} per layer, theory says {_g(theory)} ({_g(m['relative disagreement fitted vs theory'])} relative disagreement)."
    )
    rule = "ratio > 1 at every depth, and increasing with depth: both -> supported, one -> mixed, neither -> not supported (theory is shown, not judged)"
    claim = "BN does not make vanishing or exploding gradients impossible."
    return _finding(
        6,
        claim,
        f"plain BN-ReLU MLPs, width 256, batch {batch}, at initialization",
        rule,
        m,
        verdict_from(conditions),
        summary,
        runs,
    )


_PRE_COLUMNS = ("pre_mean", "pre_std", "pre_p15", "pre_p50", "pre_p85")


def _scale_profile(stats: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    acts = activation_rows(stats[stats["step"] == 0]).sort_values("order")
    weights = stats[(stats["step"] == 0) & (stats["kind"] == "weight")].sort_values("order")
    last_grad = float(acts["grad_rms"].iloc[-1])
    profile = acts["grad_rms"].to_numpy() / last_grad
    feeding_bn = weights["weight_grad_norm"].to_numpy()[:-1] / last_grad  # every Linear but the output layer
    return acts, profile, feeding_bn


def check_weight_scale_invariance(runs: pd.DataFrame, layer_stats: pd.DataFrame) -> Finding:
    """Claim 7: BN makes a layer's output and input gradient invariant to weight scale a; dL/dW scales by 1/a."""
    scales = sorted(float(s) for s in _spec_value(runs, "model.weight_scale").dropna().unique())
    m: dict[str, float] = {}
    conditions: list[bool] = []
    if 1.0 not in scales:
        return _finding(
            7,
            "BN is invariant to weight scale",
            "weight-scale runs",
            "needs a run with scale 1",
            {},
            "mixed",
            "No reference run with weight scale 1.",
            runs,
        )
    profiles = {}
    for scale in scales:
        run_id = _select(runs, model__weight_scale=scale)["run_id"].iloc[0]
        profiles[scale] = _scale_profile(_stats(layer_stats, run_id))
    ref_acts, ref_profile, ref_weights = profiles[1.0]
    ref_std = ref_acts["pre_std"].to_numpy()
    for scale in scales:
        if scale == 1.0:
            continue
        acts, profile, weights = profiles[scale]
        pre = max(float(np.max(np.abs(acts[c].to_numpy() - ref_acts[c].to_numpy()) / ref_std)) for c in _PRE_COLUMNS)
        grad = float(np.max(np.abs(profile / ref_profile - 1)))
        weight = float(np.max(np.abs(weights * scale / ref_weights - 1)))
        raw = float(np.max(np.abs(acts["grad_rms"].to_numpy() / ref_acts["grad_rms"].to_numpy() - 1)))
        m[f"pre-activation stats, max deviation in stds, a={scale:g}"] = pre
        m[f"grad_rms profile (layer / last layer), max rel. deviation, a={scale:g}"] = grad
        m[f"a x weight grad norm (Linear into BN, / last grad_rms), max rel. deviation, a={scale:g}"] = weight
        m[f"raw grad_rms, max rel. deviation, a={scale:g} (output layer scaled too)"] = raw
        conditions += [
            pre < INVARIANCE_TOLERANCE,
            grad < GRADIENT_INVARIANCE_TOLERANCE,
            weight < GRADIENT_INVARIANCE_TOLERANCE,
        ]
    shown = "; ".join(
        f"a={s:g}: stats {_g(m[f'pre-activation stats, max deviation in stds, a={s:g}'])}, gradient profile "
        f"{_g(m[f'grad_rms profile (layer / last layer), max rel. deviation, a={s:g}'])}, a x dL/dW "
        f"{_g(m[f'a x weight grad norm (Linear into BN, / last grad_rms), max rel. deviation, a={s:g}'])}"
        for s in scales
        if s != 1.0
    )
    summary = f"Deviations from weight scale 1 at init: {shown}."
    rule = (
        f"for every a: pre-activation stats within {INVARIANCE_TOLERANCE} stds, and the gradient profile and a x weight-grad norm "
        f"(both over the last layer's grad_rms, since the unnormalized output layer is scaled too) within {GRADIENT_INVARIANCE_TOLERANCE:.0%}; "
        "all -> supported, none -> not supported, else mixed"
    )
    claim = "BN makes a layer's output and its input gradient invariant to the weight scale a, and scales the weight gradient by 1/a (Ioffe & Szegedy 2015, sec. 3.3)."
    return _finding(
        7, claim, "BN MLP with weights scaled by a, at initialization", rule, m, verdict_from(conditions), summary, runs
    )


def check_tanh(runs: pd.DataFrame, layer_stats: pd.DataFrame) -> Finding:
    """Claim 8: tanh saturates and vanishes too, not only sigmoid."""
    m: dict[str, float] = {}
    conditions = []
    for activation in ("tanh", "sigmoid"):
        plain = _select(runs, model__norm="none", model__activation=activation)
        default = _select(plain, model__init="pytorch_default")
        ratios = _ratios_by_depth(default, layer_stats)
        deep = {d: r for d, r in ratios.items() if d >= 10}
        for depth, ratio in deep.items():
            m[f"grad ratio, {activation} depth {depth}, no BN, init"] = ratio
        badly = _select(plain, model__init="small_gaussian")
        saturated = _mean(_saturation(layer_stats, r) for r in badly["run_id"])
        m[f"saturated fraction, {activation}, N(0,1) init, no BN"] = saturated
        if activation == "tanh":
            conditions = [bool(deep) and all(r < VANISHING_RATIO for r in deep.values()), saturated >= TANH_SATURATED]
    vanish = ", ".join(
        f"depth {k.split('depth ')[1].split(',')[0]}: {_g(v)}" for k, v in m.items() if k.startswith("grad ratio, tanh")
    )
    summary = (
        f"tanh without BN: first/last grad ratio at init {vanish or 'not measured'}; with N(0,1) weights "
        f"{_g(m.get('saturated fraction, tanh, N(0,1) init, no BN', math.nan))} of its units are saturated "
        f"(sigmoid: {_g(m.get('saturated fraction, sigmoid, N(0,1) init, no BN', math.nan))})."
    )
    rule = (
        f"tanh nets of depth >= 10 have ratio < {VANISHING_RATIO} at init, and a tanh net with N(0,1) weights has "
        f">= {TANH_SATURATED:.0%} saturated units: both -> supported, one -> mixed, neither -> not supported"
    )
    claim = "Vanishing gradients and saturation are a problem for tanh too, not only sigmoid."
    return _finding(
        8, claim, "plain tanh and sigmoid MLPs (claims 1 and 3)", rule, m, verdict_from(conditions), summary, runs
    )


def check_bn_backward(gradients: pd.DataFrame, autograd_error: float, runs: pd.DataFrame | None = None) -> Finding:
    """Claim 9: "all m gradients in the batch are normalized", checked on BN's backward pass.

    `gradients` has one row per BN layer and step with columns (all unitless ratios or gradients):
    ``mean_in``/``mean_out`` (mean over units of |batch mean| / rms of dL/dy resp. dL/dx),
    ``std_in``/``std_out`` (mean over units of the batch std of dL/dy resp. dL/dx),
    ``x_hat_in``/``x_hat_out`` (mean over units of |mean_b(g * x_hat)| / rms(g)), and
    ``decomposition_error`` (max |grad_x from the parts - hook's grad_x| / max |hook's grad_x|).
    `autograd_error` is the numpy backward pass's max relative error against autograd.
    """
    g = gradients
    m = {
        "numpy backward vs autograd, max rel. error (float64)": float(autograd_error),
        "decomposition vs hook gradient, max rel. error (float32)": float(g["decomposition_error"].max()),
        "|batch mean| / rms of gradient arriving at BN (dL/dy)": float(g["mean_in"].mean()),
        "|batch mean| / rms of gradient leaving BN (dL/dx)": float(g["mean_out"].mean()),
        "|component along x_hat| / rms, arriving": float(g["x_hat_in"].mean()),
        "|component along x_hat| / rms, leaving": float(g["x_hat_out"].mean()),
        "per-unit batch std of gradient, arriving": float(g["std_in"].mean()),
        "per-unit batch std of gradient, leaving": float(g["std_out"].mean()),
    }
    mechanics = [
        m["numpy backward vs autograd, max rel. error (float64)"] < BACKWARD_TOLERANCE,
        m["decomposition vs hook gradient, max rel. error (float32)"] < DECOMPOSITION_TOLERANCE,
        m["|batch mean| / rms of gradient leaving BN (dL/dx)"]
        < MEAN_REMOVED
        < m["|batch mean| / rms of gradient arriving at BN (dL/dy)"],
    ]
    standardized = abs(m["per-unit batch std of gradient, leaving"] - 1) < UNIT_STD_TOLERANCE
    verdict: Verdict = verdict_from([all(mechanics), standardized])
    summary = (
        f"BN's backward pass removes the gradient's batch mean ({_g(m['|batch mean| / rms of gradient arriving at BN (dL/dy)'])} -> "
        f"{_g(m['|batch mean| / rms of gradient leaving BN (dL/dx)'])} of its rms) and its component along x_hat "
        f"({_g(m['|component along x_hat| / rms, arriving'])} -> {_g(m['|component along x_hat| / rms, leaving'])}), then scales by gamma/sigma; "
        f"the per-unit batch std goes {_g(m['per-unit batch std of gradient, arriving'])} -> {_g(m['per-unit batch std of gradient, leaving'])}, "
        f"{'so the gradients are standardized' if standardized else 'so the gradients are re-centred but not standardized'}."
    )
    rule = (
        f"mechanics: numpy backward matches autograd (< {BACKWARD_TOLERANCE:g}), the decomposition matches the hook (< {DECOMPOSITION_TOLERANCE:g}) "
        f"and the batch mean is removed (< {MEAN_REMOVED:g} of rms after, more before); standardized: per-unit std after within "
        f"{UNIT_STD_TOLERANCE:.0%} of 1; both -> supported, one -> mixed, neither -> not supported"
    )
    claim = "If you have m gradients in your batch, all of them will be normalized."
    empty = pd.DataFrame({"run_id": []}) if runs is None else runs
    return _finding(
        9,
        claim,
        "BN's backward pass: numpy vs autograd on random data; hooks on a BN sigmoid MLP",
        rule,
        m,
        verdict,
        summary,
        empty,
    )
