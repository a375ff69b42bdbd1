"""`gradientflow explain --model file.py:factory`: the explain claims on a user's own architecture.

The factory is `diagnose`'s (``make()`` returns ``(model, batches[, loss_fn[, optimizer]])``). Each
seed calls it afresh (torch seeded first, so the same initial weights and batches), trains the
model as given and the same model with BatchNorm inserted before each activation (the insertion
`diagnose --try-fixes` applies), at the factory's learning rate times each of `LR_FACTORS`, and
records one step with every weight matrix scaled by each of `WEIGHT_SCALES` (claim 7). Runs are
stored in SQLite like the study's (a rerun reuses them; their id includes a hash of the factory's
file, so an edited model is trained again) and the claims of `analysis.model_claims` are checked.
When BN cannot be inserted (no activation module, batch size 1, 3-D activation inputs) only the
model as given is trained and the claims that need BN say why they are not applicable.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..analysis.claim_records import ClaimResult
from ..analysis.model_claims import LOSS_RATIO, check_model_claims, model_claim_data
from ..analysis.verdicts import Diagnosis
from ..diagnose import Fix, apply_fix, call_factory, load_factory, train_and_probe
from ..diagnose.factory import Setup
from ..diagnose.fixes import input_shapes
from ..probe import activation_name
from ..records import MetricPoint, RunInfo, RunOutcome
from ..runner import software_versions
from ..store import Store

__all__ = ["LR_FACTORS", "WEIGHT_SCALES", "ModelExplainResult", "bn_insertion_plan", "explain_model"]

#: Learning rates tried, as multiples of the factory's optimizer's: claim 5 needs the model as given
#: to train at the lowest and fail somewhere above it.
LR_FACTORS = (1.0, 10.0, 100.0)
#: Claim 7's scales of every weight matrix (a 16x range, as in the study).
WEIGHT_SCALES = (0.25, 1.0, 4.0)
DEFAULT_SEEDS = 3
DEFAULT_STEPS = 200
_HEALTHY = Diagnosis("healthy", None, (), pd.DataFrame(), (0, 0))  # apply_fix reads no diagnosis for BN


@dataclass(frozen=True)
class ModelExplainResult:
    """What `explain_model` produced: the claims' results, the page, the runs and why BN was not inserted."""

    results: list[ClaimResult]
    html_path: Path
    run_ids: list[str]
    reused: int
    bn_layers: tuple[str, ...]
    bn_reason: str  # empty when BN was inserted before every layer in `bn_layers`
    seconds: dict[str, float]


def _first_input(setup: Setup) -> Any:
    batch = next(iter(setup.batches))
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def bn_insertion_plan(setup: Setup) -> tuple[list[str], str]:
    """(activation modules BN can go before, why BN cannot be inserted at all or at some of them)."""
    names = [n for n, m in setup.model.named_modules() if n and activation_name(m) is not None]
    if not names:
        return [], (
            "no activation module was found (functional calls such as torch.relu(x) or F.gelu(x) cannot be "
            "wrapped); use nn.ReLU(), nn.Sigmoid(), ... modules to compare with BN"
        )
    x = _first_input(setup)
    first = x[0] if isinstance(x, (tuple, list)) else x
    if isinstance(first, torch.Tensor) and first.dim() > 0 and first.shape[0] < 2:
        return [], f"the batch size is {first.shape[0]}: BatchNorm needs at least 2 examples per batch in training"
    shapes = input_shapes(setup, names)
    usable = [n for n in names if len(shapes.get(n, ())) in (2, 4, 5)]
    skipped = [n for n in names if n not in usable]
    if not usable:
        dims = sorted({len(shapes.get(n, ())) for n in names})
        return [], (
            f"the activations' inputs are {'/'.join(map(str, dims))}-D; BatchNorm is inserted before (batch, features) "
            "and (batch, channels, ...) inputs only (a transformer's (batch, tokens, features) would be normalized per token)"
        )
    reason = (
        f"not before {', '.join(skipped[:4])}{' ...' if len(skipped) > 4 else ''} (inputs not 2-, 4- or 5-D)"
        if skipped
        else ""
    )
    return usable, reason


def _source_hash(target: str) -> str:
    location = target.rpartition(":")[0]
    path = Path(location)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else location


def _run_id(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _loss_ratio(losses: list[float], diverged: bool) -> float:
    if diverged or len(losses) < 2 or not losses[0] > 0:
        return math.nan
    tail = losses[-max(1, len(losses) // 10) :]
    return float(sum(tail) / len(tail) / losses[0])


def _train_one(
    factory: Callable[[], Any], target: str, spec: dict[str, Any], layers: list[str]
) -> tuple[pd.DataFrame, list[MetricPoint], RunOutcome]:
    setup = call_factory(factory, target, spec["train"]["seed"])
    if spec["model"]["norm"] == "batch":
        fix = Fix(1, "batchnorm", "insert BatchNorm before each activation", tuple(layers), "", True)
        if not apply_fix(setup, fix, _HEALTHY):
            raise RuntimeError(f"BatchNorm could not be inserted into {target}")
    for group in setup.optimizer.param_groups:
        group["lr"] = group["lr"] * spec["optim"]["lr_factor"]
    scale = spec["model"]["weight_scale"]
    if scale != 1.0:
        with torch.no_grad():
            for parameter in setup.model.parameters():
                if parameter.dim() >= 2:
                    parameter.mul_(scale)
    trace = train_and_probe(setup, spec["train"]["steps"], target)
    # diagnose's stream taps (a block's output, e.g. of the Sequential(BN, activation) that the
    # insertion makes) are not activation inputs: the claims read the activations only.
    frame = trace.frame[trace.frame["kind"] != "tap"]
    diverged = trace.diverged_at is not None
    points = [MetricPoint(step, "train_loss", loss) for step, loss in enumerate(trace.losses) if math.isfinite(loss)]
    points.append(MetricPoint(max(trace.steps_done - 1, 0), LOSS_RATIO, _loss_ratio(trace.losses, diverged)))
    outcome = RunOutcome("diverged" if diverged else "finished", trace.steps_done, trace.diverged_at)
    return frame, points, outcome


def _specs(target: str, norms: list[str], seeds: int, steps: int, base_lr: float) -> list[dict[str, Any]]:
    source = _source_hash(target)
    specs = []
    for seed in range(seeds):
        for norm in norms:
            cells = [(f, 1.0, steps) for f in LR_FACTORS] + [(1.0, a, 1) for a in WEIGHT_SCALES]
            for factor, scale, run_steps in cells:
                specs.append({
                    "name": "explain-model",
                    "model": {"arch": f"factory {target}", "source": source, "norm": norm, "weight_scale": scale},
                    "optim": {"lr": base_lr * factor, "lr_factor": factor},
                    "train": {"steps": run_steps, "seed": seed},
                })  # fmt: skip
    return specs


def explain_model(
    target: str,
    output: Path,
    db: Path | None = None,
    seeds: int = DEFAULT_SEEDS,
    steps: int = DEFAULT_STEPS,
    on_stage: Callable[[str], None] | None = None,
    threads: int = 1,
) -> ModelExplainResult:
    """Train `target`'s model with and without BN on `seeds` seeds, check the claims, write ``output/index.html``."""
    stage = on_stage or (lambda text: None)
    started = time.perf_counter()
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # small models train fastest on one thread, and the machine is shared
    try:
        factory = load_factory(target)
        probe_setup = call_factory(factory, target, 0)
        layers, reason = bn_insertion_plan(probe_setup)
        base_lr = float(probe_setup.optimizer.param_groups[0]["lr"])
        norms = ["none", "batch"] if layers else ["none"]
        specs = _specs(target, norms, seeds, steps, base_lr)
        db = db or output / "explain.db"
        output.mkdir(parents=True, exist_ok=True)
        reused = 0
        with Store(db) as store:
            done = store.completed_run_ids()
            for index, spec in enumerate(specs, start=1):
                run_id = _run_id(spec)
                if run_id in done:
                    reused += 1
                    continue
                stage(f"run {index}/{len(specs)}: {spec['model']['norm']} BN, lr x{spec['optim']['lr_factor']:g}, "
                      f"weights x{spec['model']['weight_scale']:g}, seed {spec['train']['seed']}")  # fmt: skip
                store.begin_run(
                    RunInfo(run_id, spec["name"], spec, spec["train"]["seed"], "running", software_versions())
                )
                frame, points, outcome = _train_one(factory, target, spec, layers)
                store.write_layer_stats(run_id, frame)
                store.write_metrics(run_id, points)
                store.finish_run(run_id, outcome)
    finally:
        torch.set_num_threads(previous)
    seconds = {"runs": time.perf_counter() - started}
    start = time.perf_counter()
    ids = [_run_id(s) for s in specs]
    with Store(db, readonly=True) as store:
        runs = store.runs_frame()
        runs = runs[runs["run_id"].isin(ids)]
        stats = store.layer_stats_frame(ids)
        metrics = store.metrics_frame(ids)
        activations = {str(a) for a in stats.get("activation", pd.Series(dtype=object)).dropna().unique()}
        data = model_claim_data(runs, stats, metrics)
        results = check_model_claims(data, bool(layers), reason, activations)
        from ..report import render_explain_page

        groups = [
            ("model", "the model as given and with BN, the factory's learning rate", list(data[1].runs["run_id"]) if 1 in data else []),
            ("model-lr", "learning rate x 10 and x 100", [r for r in (data[5].runs["run_id"] if 5 in data else []) if r not in set(data[1].runs["run_id"] if 1 in data else [])]),
            ("model-scale", "weights scaled by a, one step", list(data[7].runs["run_id"]) if 7 in data else []),
        ]  # fmt: skip
        path = render_explain_page(store, results, data, groups, output / "index.html",
                                   title=f"Does batch normalization resolve vanishing gradients in {target}?",
                                   intro_html=_intro(target, seeds, steps, base_lr, layers, reason))  # fmt: skip
    seconds["claims and page"] = time.perf_counter() - start
    return ModelExplainResult(results, path, ids, reused, tuple(layers), reason, seconds)


def _intro(target: str, seeds: int, steps: int, lr: float, layers: list[str], reason: str) -> str:
    shown = ", ".join(layers[:6]) + (f" and {len(layers) - 6} more" if len(layers) > 6 else "")
    if layers:
        how = f"and the same model with BatchNorm inserted before {html.escape(shown)}"
        if reason:
            how += f" ({html.escape(reason)})"
    else:
        how = f'only: <strong class="warning">BatchNorm could not be inserted: {html.escape(reason)}</strong>'
    return (
        f"<p>The model of <code>{html.escape(target)}</code> was trained as given {how}, for {steps} steps on "
        f"{seeds} seeds (same seed, same initial weights and batches for both), at the factory's learning rate "
        f"{lr:g} and at {', '.join(f'{f:g}x' for f in LR_FACTORS[1:])} it. The claims come from a Q&amp;A answer on "
        "how batch normalization helps with vanishing gradients; those that cannot apply to this model say why.</p>"
    )
