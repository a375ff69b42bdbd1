"""`diagnose(target)`: load the factory, train with the probe, judge, rank fixes, and try the cheap ones."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..analysis.verdicts import THRESHOLDS, Diagnosis, Thresholds
from .factory import call_factory, load_factory
from .fixes import Fix, apply_fix, rank_fixes, why_not_applied
from .guard import Guard
from .report import DiagnoseReport, TriedFix, UntriedFix
from .session import Trace, diagnose_setup

__all__ = ["diagnose", "DEFAULT_STEPS", "MAX_TRIES"]

DEFAULT_STEPS = 200
MAX_TRIES = 2  # each try is a full rerun: the two best-ranked fixes that can be applied automatically


def _final_loss(trace: Trace) -> float:
    if trace.diverged_at is not None or not trace.losses:
        return math.nan
    tail = trace.losses[-10:]
    return sum(tail) / len(tail)


def _try(
    factory: Callable[[], object],
    fix: Fix,
    before: Diagnosis,
    steps: int,
    seed: int,
    thresholds: Thresholds,
    guard: Guard,
) -> TriedFix | UntriedFix:
    setup = call_factory(factory, guard.target, seed, guard)
    with guard.limit(f"applying fix {fix.rank}", setup.model), guard.phase(f"applying fix {fix.rank} ({fix.action})", setup.model):  # fmt: skip
        applied = apply_fix(setup, fix, before)
    if not applied:
        return UntriedFix(fix, why_not_applied(setup, fix))
    diagnosis, trace = diagnose_setup(setup, steps, guard.target, thresholds, guard)
    return TriedFix(fix, tuple(applied), diagnosis, _final_loss(trace), trace.diverged_at)


def diagnose(
    target: str,
    steps: int = DEFAULT_STEPS,
    try_fixes: bool = False,
    seed: int = 0,
    thresholds: Thresholds = THRESHOLDS,
    on_stage: Callable[[str], None] | None = None,
    threads: int = 1,
    timeout: float | None = None,
) -> DiagnoseReport:
    """Return the `DiagnoseReport` of the factory `target` (``file.py:name`` or ``package.module:name``).

    Seeds torch with `seed` before each call of the factory, trains for `steps` optimizer steps
    with the probe, judges the recorded statistics and ranks fixes; with `try_fixes`, reruns
    with each of the best two automatic fixes applied to a fresh model (a fix this model does not
    allow, e.g. BatchNorm before functional activations, is reported in `untried` with the
    reason). `on_stage` receives a short line before each training run (for progress output).
    `threads` sets torch's CPU threads for the run (0: leave torch's setting): small models train
    fastest on one, and several threads on a busy machine can be 30x slower. `timeout` (seconds;
    None: no limit) bounds the import, each call of the factory and each training step; a
    failure or a time-out in the user's code raises a GradientflowError naming the user's file
    and line.
    """
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _diagnose(target, steps, try_fixes, seed, thresholds, on_stage, Guard(target, timeout))
    finally:
        torch.set_num_threads(previous)


def _diagnose(
    target: str,
    steps: int,
    try_fixes: bool,
    seed: int,
    thresholds: Thresholds,
    on_stage: Callable[[str], None] | None,
    guard: Guard,
) -> DiagnoseReport:
    factory = load_factory(target, guard)
    setup = call_factory(factory, target, seed, guard)
    if on_stage:
        on_stage(f"training {target} for {steps} steps with the probe")
    diagnosis, trace = diagnose_setup(setup, steps, target, thresholds, guard)
    fixes = tuple(rank_fixes(diagnosis, setup))
    tried: list[TriedFix] = []
    untried: list[UntriedFix] = []
    if try_fixes:
        for fix in [f for f in fixes if f.auto]:
            if len(tried) == MAX_TRIES:
                break
            if on_stage:
                on_stage(f"trying fix {fix.rank}: {fix.action}")
            result = _try(factory, fix, diagnosis, steps, seed, thresholds, guard)
            (tried if isinstance(result, TriedFix) else untried).append(result)  # type: ignore[arg-type]
    return DiagnoseReport(
        target,
        steps,
        trace.steps_done,
        trace.diverged_at,
        trace.seconds,
        _final_loss(trace),
        diagnosis,
        fixes,
        tuple(tried),
        tuple(untried),
        tuple(sorted(int(s) for s in trace.frame["step"].unique())),
    )
