"""The claims on a user's own model (``explain --model``): the same table rows, other experiments and rules.

The model is trained as given (``spec.model.norm == "none"``) and with BatchNorm inserted before
each activation (``"batch"``), on the same seeds and batches, at the factory's learning rate times
each of a few factors (``spec.optim.lr_factor``); claim 7's runs scale every weight matrix by a
(``spec.model.weight_scale``) and record one step. Claims that need BN are "not applicable" when
it could not be inserted, claim 8 when the model has no tanh, claim 9 always (it is about BN's
backward pass itself). Each rule is judged on 95% intervals across seeds, as in the study.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..records import Verdict
from . import claim_checks as c
from .claim_records import Claim, ClaimData, ClaimResult, KeyNumber, not_applicable, not_decided
from .claims import CLAIMS
from .intervals import Condition, Estimate, estimate
from .summary import activation_rows, gradient_ratio

__all__ = ["MODEL_CLAIMS", "TRAINED_LOSS_FRACTION", "LOSS_RATIO", "model_claim_data", "check_model_claims"]

#: A run "trains" when its final loss (mean of the last tenth of steps) is under half its first loss.
TRAINED_LOSS_FRACTION = 0.5
#: The metric each model run stores: final loss / first loss (unitless).
LOSS_RATIO = "final_loss_ratio"
_ON = "(judged on the 95% interval across seeds)"


def _stats(data: ClaimData, run_id: str) -> pd.DataFrame:
    return data.layer_stats[data.layer_stats["run_id"] == run_id]


def _ratio(data: ClaimData):
    return lambda runs: gradient_ratio(_stats(data, runs["run_id"].iloc[0]), 0)


def _result(
    claim: Claim, summary: str, conditions: list[Condition], keys: list[KeyNumber], runs: pd.DataFrame
) -> ClaimResult:
    return c.result_of(claim, summary, conditions, keys, {}, runs)


def _vanishing(claim: Claim, data: ClaimData) -> ClaimResult:
    plain = c.by_seed(c.select(data.runs, model__norm="none"), _ratio(data))
    bn = c.by_seed(c.select(data.runs, model__norm="batch"), _ratio(data))
    p = estimate(plain.values(), log=True)
    conditions = [Condition("first/last grad_rms ratio without BN, init", p, "<", c.VANISHING_RATIO)]
    keys = [KeyNumber("first/last grad_rms ratio without BN, init", p)]
    if bn:
        b = estimate(bn.values(), log=True)
        lift = estimate(c.paired(bn, plain, lambda x, y: x / y), log=True)
        keys += [KeyNumber("same with BN inserted", b), KeyNumber("with BN / without BN", lift)]
        conditions.append(Condition("with BN / without BN", lift, ">", 1.0))
    summary = f"First/last-layer grad_rms ratio at init: {p.text()} as given" + (
        f", {keys[1].value.text()} with BN inserted." if bn else "."
    )
    return _result(claim, summary, conditions, keys, data.runs)


def _standardizes(claim: Claim, data: ClaimData) -> ClaimResult:
    per_seed = {}
    for seed, runs in c.select(data.runs, model__norm="batch").groupby("seed"):
        first = activation_rows(_stats(data, runs["run_id"].iloc[0]))
        first = first[first["step"] == 0]
        per_seed[int(seed)] = (
            float(first["pre_mean"].abs().max()),
            float((first["pre_std"] - 1).abs().max()),
            float(np.minimum(-first["pre_min"], first["pre_max"]).min()),
        )
    values = [estimate(v[i] for v in per_seed.values()) for i in range(3)]
    labels = ["largest |mean| of a BN output, init", "largest |std - 1| of a BN output, init",
              "smallest reach beyond 0 of a BN output, init"]  # fmt: skip
    conditions = [
        Condition(labels[0], values[0], "<", c.STANDARDIZED_TOLERANCE),
        Condition(labels[1], values[1], "<", c.STANDARDIZED_TOLERANCE),
        Condition(labels[2], values[2], ">", 1.0),
    ]
    summary = (
        f"The inserted BN layers' outputs have |mean| <= {values[0].text()}, std within {values[1].text()} of 1 and "
        f"reach {values[2].text()} on both sides of 0 at init."
    )
    return _result(claim, summary, conditions, [KeyNumber(label, v) for label, v in zip(labels, values)], data.runs)


def _saturated(data: ClaimData):
    def value(runs: pd.DataFrame) -> float:
        acts = activation_rows(_stats(data, runs["run_id"].iloc[0]))
        return float(acts["saturated_frac"].mean()) if len(acts) else math.nan

    return value


def _saturation(claim: Claim, data: ClaimData) -> ClaimResult:
    plain = c.by_seed(c.select(data.runs, model__norm="none"), _saturated(data))
    bn = c.by_seed(c.select(data.runs, model__norm="batch"), _saturated(data))
    p, b = estimate(plain.values()), estimate(bn.values())
    keys = [KeyNumber("saturated fraction without BN", p), KeyNumber("saturated fraction with BN", b)]
    summary = f"Saturated fraction (mean over layers and recorded steps): {p.text()} as given, {b.text()} with BN."
    if not p.finite or p.mean < c.SATURATION_FLOOR:
        reason = f"the model as given saturates under {c.SATURATION_FLOOR:.0%} of the time: nothing for BN to reduce"
        return not_decided(claim, reason, _result(claim, summary, [], keys, data.runs))
    drop = estimate(c.paired(plain, bn, lambda x, y: x - y))
    return _result(
        claim, summary, [Condition("saturated fraction without minus with BN", drop, ">", 0.0)], keys, data.runs
    )


def _drift(claim: Claim, data: ClaimData) -> ClaimResult:
    result = c.check_percentile_drift(claim, data)
    return dataclasses.replace(result, summary=result.summary.replace("last hidden layer", "last activation"))


def _loss_ratio(data: ClaimData):
    def value(runs: pd.DataFrame) -> float:
        run = runs.iloc[0]
        rows = data.metrics[(data.metrics["run_id"] == run["run_id"]) & (data.metrics["name"] == LOSS_RATIO)]
        return float(rows["value"].iloc[-1]) if run["status"] == "finished" and len(rows) else math.nan

    return value


def _learning_rate(claim: Claim, data: ClaimData) -> ClaimResult:
    table: dict[str, dict[float, Estimate]] = {}
    for norm in ("none", "batch"):
        chosen = c.select(data.runs, model__norm=norm)
        table[norm] = {
            float(f): estimate(c.by_seed(g, _loss_ratio(data)).values())
            for f, g in chosen.groupby("spec.optim.lr_factor")
        }

    def largest(norm: str, accept) -> float:
        return max((f for f, e in table[norm].items() if accept(e)), default=0.0)

    def trains(e: Estimate) -> str:
        return "fails" if not e.finite else e.satisfies("<", TRAINED_LOSS_FRACTION)

    sure = {n: largest(n, lambda e: trains(e) == "holds") for n in table}
    maybe = {n: largest(n, lambda e: trains(e) != "fails") for n in table}
    point = {n: largest(n, lambda e: e.finite and e.mean < TRAINED_LOSS_FRACTION) for n in table}
    keys = [
        KeyNumber(f"final / first loss, lr x{f:g}, {'with' if n == 'batch' else 'without'} BN", e)
        for f in sorted({point["none"], point["batch"]} - {0.0})
        for n in ("none", "batch")
        if (e := table[n].get(f)) is not None
    ]
    shown = {n: (f"x{point[n]:g}" if point[n] else "no swept factor") for n in point}
    summary = (
        f"Largest learning-rate factor at which every seed halves its loss: {shown['none']} as given, "
        f"{shown['batch']} with BN."
    )
    base = ClaimResult(claim, "mixed", False, summary, tuple(keys[:5]), run_ids=tuple(data.runs["run_id"]))
    if not point["none"] or not point["batch"]:
        who = "the model as given" if not point["none"] else "the model with BN"
        return not_decided(
            claim, f"{who} trains at none of the swept rates, so nothing shows which tolerates more", base
        )
    if sure["batch"] > maybe["none"]:
        return dataclasses.replace(base, verdict="supported", robust=True)
    if maybe["batch"] <= sure["none"]:
        return dataclasses.replace(base, verdict="not supported", robust=True)
    verdict: Verdict = "mixed" if point["batch"] >= point["none"] else "not supported"
    return dataclasses.replace(base, verdict=verdict, note="not robust across seeds: a loss interval straddles the bar")


def _growth(claim: Claim, data: ClaimData) -> ClaimResult:
    def per_layer(runs: pd.DataFrame) -> float:
        acts = activation_rows(_stats(data, runs["run_id"].iloc[0]))
        grads = acts[acts["step"] == 0]["grad_rms"].to_numpy(dtype="float64")
        if len(grads) < 2 or not np.all(grads > 0):
            return math.nan
        depth_from_output = np.arange(len(grads))[::-1]  # the gradient flows from the last layer down
        return float(math.exp(np.polyfit(depth_from_output, 2 * np.log(grads), 1)[0]))

    bn = c.by_seed(c.select(data.runs, model__norm="batch"), per_layer)
    growth = estimate(bn.values(), log=True)
    ratio = estimate(c.by_seed(c.select(data.runs, model__norm="batch"), _ratio(data)).values(), log=True)
    conditions = [Condition("per-layer growth of grad_rms^2 toward the input, with BN", growth, ">", 1.0)]
    keys = [KeyNumber("per-layer growth of grad_rms^2 toward the input, with BN", growth),
            KeyNumber("first/last grad_rms ratio with BN, init", ratio)]  # fmt: skip
    summary = (
        f"With BN inserted the squared gradient changes by {growth.text()} per layer toward the input at init "
        f"(first/last ratio {ratio.text()}): BN alone does not keep it constant."
    )
    return _result(claim, summary, conditions, keys, data.runs)


def _scale(claim: Claim, data: ClaimData) -> ClaimResult:
    def deviations(runs: pd.DataFrame) -> tuple[float, float]:
        profiles = {}
        for run in runs.to_dict("records"):
            acts, profile, _ = c.scale_profile(_stats(data, run["run_id"]))
            profiles[float(run["spec.model.weight_scale"])] = (acts, profile)
        ref_acts, ref_profile = profiles.get(1.0, (None, None))
        if ref_acts is None:
            return math.nan, math.nan
        pre = grad = 0.0
        for scale, (acts, profile) in profiles.items():
            if scale != 1.0 and len(acts) == len(ref_acts):
                std = ref_acts["pre_std"].to_numpy()
                pre = max(pre, max(float(np.max(np.abs(acts[k].to_numpy() - ref_acts[k].to_numpy()) / std))
                                   for k in ("pre_mean", "pre_std", "pre_p15", "pre_p50", "pre_p85")))  # fmt: skip
                grad = max(grad, float(np.max(np.abs(profile / ref_profile - 1))))
        return pre, grad

    results = {}
    for norm in ("batch", "none"):
        seeds = {int(s): deviations(g) for s, g in c.select(data.runs, model__norm=norm).groupby("seed")}
        results[norm] = (estimate(v[0] for v in seeds.values()), estimate(v[1] for v in seeds.values()))
    labels = ["with BN: largest change of activation-input stats across a (in stds)",
              "with BN: largest relative change of the gradient profile across a"]  # fmt: skip
    conditions = [
        Condition(labels[0], results["batch"][0], "<", c.INVARIANCE_TOLERANCE),
        Condition(labels[1], results["batch"][1], "<", c.GRADIENT_INVARIANCE_TOLERANCE),
    ]
    keys = [KeyNumber(labels[0], results["batch"][0]), KeyNumber(labels[1], results["batch"][1]),
            KeyNumber("as given: largest relative change of the gradient profile across a", results["none"][1])]  # fmt: skip
    summary = (
        f"Scaling every weight matrix by a moves the activation inputs by {results['batch'][0].text()} stds with BN "
        f"and the gradient profile by {results['batch'][1].text()} (as given: {results['none'][1].text()})."
    )
    return _result(claim, summary, conditions, keys, data.runs)


def _tanh(claim: Claim, data: ClaimData) -> ClaimResult:
    plain = c.by_seed(c.select(data.runs, model__norm="none"), _ratio(data))
    p = estimate(plain.values(), log=True)
    label = "first/last grad_rms ratio without BN, init (a model with tanh)"
    summary = f"The model's tanh layers pass a first/last gradient ratio of {p.text()} at init without BN."
    return _result(claim, summary, [Condition(label, p, "<", c.VANISHING_RATIO)], [KeyNumber(label, p)], data.runs)


_NEEDS_BN = {2, 3, 4, 5, 6, 7}
_MODEL_ROWS: dict[int, tuple[str, tuple[str, ...], str, Callable[[Claim, ClaimData], ClaimResult], str]] = {
    1: ("Your model as given passes a far smaller gradient to its first layer than to its last; BN raises it.", ("model",),
        f"Supported when the first/last grad_rms ratio at init is below {c.VANISHING_RATIO} as given and higher with BN "
        f"inserted, paired by seed {_ON}.", _vanishing, "profile-by-depth"),
    2: ("The BN layers inserted before your model's activations standardize their inputs.", ("model",),
        f"Supported when every inserted BN output has |mean| and |std - 1| below {c.STANDARDIZED_TOLERANCE} and reaches "
        f"beyond -1 and 1 at init {_ON}.", _standardizes, "bn-output-range"),
    3: ("BN lowers the fraction of saturated units of your model.", ("model",),
        f"Supported when the model saturates >= {c.SATURATION_FLOOR:.0%} as given and the saturated fraction without "
        f"minus with BN is above 0 {_ON}; less saturation leaves it not decided.", _saturation, "saturation-per-layer"),
    4: ("The input of your model's last activation drifts less during training with BN.", ("model",),
        f"Supported when the drift of its 15/50/85th percentiles without BN is more than {c.DRIFT_FACTOR:g}x that with "
        f"BN, paired by seed {_ON}; at most 1x is not supported.", _drift, "percentiles"),
    5: ("Your model with BN trains at higher multiples of its learning rate.", ("model-lr",),
        f"Supported when the largest learning-rate factor at which every seed's final loss is under "
        f"{TRAINED_LOSS_FRACTION:g} x its first loss is higher with BN {_ON}; not decided when either trains at none.",
        _learning_rate, "loss-by-lr"),
    6: ("With BN inserted, your model's gradient still changes by a constant factor per layer toward the input at init.",
        ("model",), f"Supported when, with BN, the fitted per-layer growth of grad_rms^2 toward the input is above 1 {_ON}.",
        _growth, "profile-by-depth"),
    7: ("With BN inserted, scaling your model's weight matrices by a leaves activation inputs and the gradient profile unchanged.",
        ("model-scale",), f"Supported when, with BN, activation-input stats move < {c.INVARIANCE_TOLERANCE} stds and the "
        f"gradient profile < {c.GRADIENT_INVARIANCE_TOLERANCE:.0%} across a {_ON}.", _scale, "scale-profile"),
    8: ("Your model's tanh layers vanish too without BN.", ("model",),
        f"Supported when the first/last grad_rms ratio at init as given is below {c.VANISHING_RATIO} {_ON}.", _tanh,
        "profile-by-depth"),
}  # fmt: skip


def _model_claim(row: Claim) -> Claim:
    if row.id not in _MODEL_ROWS:
        return row
    tested, experiments, rule, check, figure = _MODEL_ROWS[row.id]
    return dataclasses.replace(
        row,
        tested=tested,
        experiments=experiments,
        rule=rule,
        check=check,
        figure=figure,
        any_model=None,
    )


#: The claims table as it applies to a user's model: same ids and words, the model's experiments and rules.
MODEL_CLAIMS: tuple[Claim, ...] = tuple(_model_claim(row) for row in CLAIMS)


def model_claim_data(runs: pd.DataFrame, layer_stats: pd.DataFrame, metrics: pd.DataFrame) -> dict[int, ClaimData]:
    """Each model claim's data: the base-rate runs ('model'), the rate sweep ('model-lr'), the scaled runs."""
    factor = runs.get("spec.optim.lr_factor", pd.Series(1.0, index=runs.index))
    scale = runs.get("spec.model.weight_scale", pd.Series(1.0, index=runs.index))
    steps = runs.get("spec.train.steps", pd.Series(2, index=runs.index))
    pick = {
        "model": runs[(factor == 1.0) & (scale == 1.0) & (steps > 1)],
        "model-lr": runs[(scale == 1.0) & (steps > 1)],
        "model-scale": runs[steps == 1],
    }
    data = {}
    for row in MODEL_CLAIMS:
        chosen = pick.get(row.experiments[0]) if row.experiments else None
        if chosen is None:
            continue
        ids = set(chosen["run_id"])
        data[row.id] = ClaimData(
            chosen, layer_stats[layer_stats["run_id"].isin(ids)], metrics[metrics["run_id"].isin(ids)]
        )
    return data


def check_model_claims(
    data: dict[int, ClaimData], bn_inserted: bool, why_not: str, activations: set[str]
) -> list[ClaimResult]:
    """The model claims' results; BN claims not applicable when BN was not inserted (`why_not` says why)."""
    results = []
    for row in MODEL_CLAIMS:
        runs = tuple(data[row.id].runs["run_id"]) if row.id in data else ()
        if row.any_model is not None:
            results.append(not_applicable(row, row.any_model))
        elif row.id in _NEEDS_BN and not bn_inserted:
            results.append(not_applicable(row, f"BatchNorm could not be inserted: {why_not}", runs))
        elif row.id == 8 and "tanh" not in activations:
            found = ", ".join(sorted(activations)) or "none recognized"
            results.append(not_applicable(row, f"the model has no tanh activation (its activations: {found})", runs))
        elif row.id not in data or data[row.id].runs.empty:
            results.append(not_decided(row, "no runs of its experiment were recorded"))
        else:
            results.append(row.run(data[row.id]))
    return results
