"""`diagnose(target)`: load the factory, train with the probe, judge, rank fixes, and try the cheap ones."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..analysis.verdicts import THRESHOLDS, Diagnosis, Thresholds
from .factory import call_factory, load_factory
from .fixes import Fix, apply_fix, rank_fixes
from .report import DiagnoseReport, TriedFix
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
    target: str,
    fix: Fix,
    before: Diagnosis,
    steps: int,
    seed: int,
    thresholds: Thresholds,
) -> TriedFix | None:
    setup = call_factory(factory, target, seed)
    applied = apply_fix(setup, fix, before)
    if not applied:
        return None
    diagnosis, trace = diagnose_setup(setup, steps, target, thresholds)
    return TriedFix(fix, tuple(applied), diagnosis, _final_loss(trace), trace.diverged_at)


def diagnose(
    target: str,
    steps: int = DEFAULT_STEPS,
    try_fixes: bool = False,
    seed: int = 0,
    thresholds: Thresholds = THRESHOLDS,
    on_stage: Callable[[str], None] | None = None,
    threads: int = 1,
) -> DiagnoseReport:
    """Return the `DiagnoseReport` of the factory `target` (``file.py:name`` or ``package.module:name``).

    Seeds torch with `seed` before each call of the factory, trains for `steps` optimizer steps
    with the probe, judges the recorded statistics and ranks fixes; with `try_fixes`, reruns
    with each of the best two automatic fixes applied to a fresh model. `on_stage` receives a
    short line before each training run (for progress output). `threads` sets torch's CPU
    threads for the run (0: leave torch's setting): small models train fastest on one, and
    several threads on a busy machine can be 30x slower.
    """
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _diagnose(target, steps, try_fixes, seed, thresholds, on_stage)
    finally:
        torch.set_num_threads(previous)


def _diagnose(
    target: str, steps: int, try_fixes: bool, seed: int, thresholds: Thresholds, on_stage: Callable[[str], None] | None
) -> DiagnoseReport:
    factory = load_factory(target)
    setup = call_factory(factory, target, seed)
    if on_stage:
        on_stage(f"training {target} for {steps} steps with the probe")
    diagnosis, trace = diagnose_setup(setup, steps, target, thresholds)
    fixes = tuple(rank_fixes(diagnosis, setup))
    tried: list[TriedFix] = []
    if try_fixes:
        for fix in [f for f in fixes if f.auto]:
            if len(tried) == MAX_TRIES:
                break
            if on_stage:
                on_stage(f"trying fix {fix.rank}: {fix.action}")
            result = _try(factory, target, fix, diagnosis, steps, seed, thresholds)
            if result is not None:
                tried.append(result)
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
    )
