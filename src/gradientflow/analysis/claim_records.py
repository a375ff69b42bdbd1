"""The records of a checked claim: the claim itself, what its check reads, and what it returns.

`Claim` is one row of the claims table (`analysis.claims.CLAIMS`): the words of the seed answer,
the experiments whose runs feed it, its rule in one sentence, the check, and the figure that
decides it. A check turns `ClaimData` into a `ClaimResult`: the verdict (judged on 95% intervals
across seeds, see `analysis.intervals`), whether it is robust across seeds, at most five key
numbers, and every other number for the folded details.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from ..records import Finding, Verdict
from .intervals import Condition, Estimate

__all__ = ["MAX_KEY_NUMBERS", "Claim", "ClaimData", "KeyNumber", "ClaimResult", "not_applicable", "not_decided"]

#: A card shows at most this many numbers; the rest are folded away.
MAX_KEY_NUMBERS = 5


@dataclass(frozen=True)
class ClaimData:
    """What a check reads: the runs of the claim's experiments and their stored frames.

    `runs` is `Store.runs_frame()` rows (``spec.<key>`` columns, ``seed``, ``status``);
    `layer_stats` and `metrics` are the store's frames of those runs. `backward` and
    `autograd_error` are claim 9's in-process measurements (None elsewhere).
    """

    runs: pd.DataFrame
    layer_stats: pd.DataFrame
    metrics: pd.DataFrame
    backward: pd.DataFrame | None = None
    autograd_error: float | None = None


@dataclass(frozen=True)
class KeyNumber:
    """One number a card shows: what it is (units in the label) and its estimate across seeds."""

    label: str
    value: Estimate


@dataclass(frozen=True)
class ClaimResult:
    """A claim checked on measurements.

    `verdict` follows the claim's rule on the intervals; `robust` is False when an interval
    straddles a threshold (other seeds could change the verdict); `note` says why a claim is
    not decided or not applicable, or what made it not robust. `key_numbers` (at most
    `MAX_KEY_NUMBERS`) are shown on the card; `details` holds every other number (means).
    """

    claim: Claim
    verdict: Verdict
    robust: bool
    summary: str
    key_numbers: tuple[KeyNumber, ...] = ()
    conditions: tuple[Condition, ...] = ()
    details: Mapping[str, float] = field(default_factory=dict)
    run_ids: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if len(self.key_numbers) > MAX_KEY_NUMBERS:
            raise ValueError(f"claim {self.claim.id}: {len(self.key_numbers)} key numbers, at most {MAX_KEY_NUMBERS}")

    @property
    def finding(self) -> Finding:
        """The flat record (means only) that tables and older readers take."""
        measurements = {k.label: k.value.mean for k in self.key_numbers}
        measurements.update({k: float(v) for k, v in self.details.items()})
        return Finding(
            self.claim.id,
            self.claim.words,
            self.claim.tested,
            self.claim.rule,
            measurements,
            self.verdict,
            self.summary,
            self.run_ids,
        )


@dataclass(frozen=True)
class Claim:
    """One row of the claims table.

    `words` quotes the seed question/answer (or the BN paper it quotes; `source` says which);
    `tested` says what is measured; `experiments` are the study's experiment keys whose runs the
    check reads; `rule` is the verdict's rule in one sentence; `figure` names the figure that
    decides it; `any_model` is None when the claim can be checked on any architecture
    (``explain --model``), else the reason it cannot.
    """

    id: int
    words: str
    source: str
    tested: str
    experiments: tuple[str, ...]
    rule: str
    check: Callable[[Claim, ClaimData], ClaimResult]
    figure: str
    any_model: str | None = None

    def run(self, data: ClaimData) -> ClaimResult:
        """Check this claim on `data`."""
        return self.check(self, data)


def not_applicable(claim: Claim, reason: str, runs: Sequence[str] = ()) -> ClaimResult:
    """A result saying `claim` cannot apply to what was measured, and why."""
    return ClaimResult(claim, "not applicable", True, f"Not applicable: {reason}", run_ids=tuple(runs), note=reason)


def not_decided(claim: Claim, reason: str, result: ClaimResult | None = None) -> ClaimResult:
    """`result` (or an empty one) with the verdict "not decided" and `reason` as the note."""
    if result is None:
        return ClaimResult(claim, "not decided", False, f"Not decided: {reason}", note=reason)
    return ClaimResult(
        claim,
        "not decided",
        False,
        f"{result.summary} Not decided: {reason}",
        result.key_numbers,
        result.conditions,
        result.details,
        result.run_ids,
        reason,
    )


def finite_or_nan(value: float) -> float:
    """`value` as a float, NaN when it is not finite (JSON and tables show '-')."""
    return float(value) if math.isfinite(value) else math.nan
