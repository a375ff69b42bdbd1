"""Numbers measured across seeds: a mean with a 95% Student-t interval, and rules judged on the interval.

A claim's key number is measured once per seed; `estimate` turns those values into an `Estimate`
(mean and a t-interval over the seeds, n - 1 degrees of freedom). Quantities that span decades
(gradient ratios, drift ratios) use ``log=True``: the interval is computed on log10 of the values
and mapped back, so the centre is the geometric mean and the interval is multiplicative.

A `Condition` compares an estimate with a threshold. It *holds* when the whole interval lies on the
rule's side, *fails* when the whole interval lies on the other side, and is *unsure* otherwise;
`decide` turns conditions into a verdict that is "supported" only when every condition holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from ..records import Verdict

__all__ = ["LEVEL", "INTERVAL_NAME", "Estimate", "Condition", "Outcome", "estimate", "exact", "decide", "t_quantile"]

#: Coverage of every interval on the explain page.
LEVEL = 0.95
#: How the page names the interval.
INTERVAL_NAME = "95% Student-t interval across seeds"

Outcome = Literal["holds", "fails", "unsure"]


def t_quantile(n: int, level: float = LEVEL) -> float:
    """The two-sided Student-t critical value for `n` values (n - 1 degrees of freedom); inf for n < 2."""
    if n < 2:
        return math.inf
    return float(stats.t.ppf(0.5 + level / 2, n - 1))


@dataclass(frozen=True)
class Estimate:
    """A quantity measured on `n` seeds: its mean (geometric when `log`) and a 95% interval.

    `low` and `high` are in the quantity's own units. With one value the interval is the value
    itself and `n` says so (claim 9's exact measurements); with none, everything is NaN.
    """

    mean: float
    low: float
    high: float
    n: int
    log: bool = False
    values: tuple[float, ...] = ()

    @property
    def finite(self) -> bool:
        """Whether the mean is a finite number."""
        return math.isfinite(self.mean)

    def satisfies(self, op: Literal["<", ">"], threshold: float) -> Outcome:
        """'holds' if the whole interval is `op` `threshold`, 'fails' if none of it is, else 'unsure'."""
        if not self.finite:
            return "unsure"
        if op == "<":
            return "holds" if self.high < threshold else ("fails" if self.low >= threshold else "unsure")
        return "holds" if self.low > threshold else ("fails" if self.high <= threshold else "unsure")

    def text(self) -> str:
        """The mean and interval as short text, e.g. ``0.0004 [0.0002, 0.0008]``; one value alone when n <= 1."""
        if not self.finite:
            return "nan"
        if self.n <= 1 or self.low == self.high:
            return _g(self.mean)
        return f"{_g(self.mean)} [{_g(self.low)}, {_g(self.high)}]"

    def point(self, op: Literal["<", ">"], threshold: float) -> bool:
        """Whether the mean alone is `op` `threshold`."""
        return self.finite and (self.mean < threshold if op == "<" else self.mean > threshold)


def _g(value: float) -> str:
    return f"{value:.3g}"


def exact(value: float) -> Estimate:
    """A number that does not vary with the seed (a theory value, a one-off measurement)."""
    return Estimate(float(value), float(value), float(value), 1, False, (float(value),))


def estimate(values: Iterable[float], log: bool = False) -> Estimate:
    """The mean and 95% t-interval of `values` (one per seed); on log10 of the values when `log`.

    Non-finite values (and non-positive ones when `log`) make the mean NaN: a diverged seed is not
    silently dropped. ``estimate([1.0, 2.0, 3.0])`` is mean 2 with interval 2 -/+ 4.30 * 1/sqrt(3).
    """
    kept = tuple(float(v) for v in values)
    if not kept:
        return Estimate(math.nan, math.nan, math.nan, 0, log)
    bad = any(not math.isfinite(v) or (log and v <= 0) for v in kept)
    if bad:
        return Estimate(math.nan, math.nan, math.nan, len(kept), log, kept)
    data = np.log10(kept) if log else np.asarray(kept)
    centre = float(data.mean())
    half = t_quantile(len(kept)) * float(data.std(ddof=1)) / math.sqrt(len(kept)) if len(kept) > 1 else 0.0
    if not math.isfinite(half):
        half = 0.0
    low, high = centre - half, centre + half
    if log:
        return Estimate(10**centre, 10**low, 10**high, len(kept), True, kept)
    return Estimate(centre, low, high, len(kept), False, kept)


@dataclass(frozen=True)
class Condition:
    """One part of a claim's rule: `label`'s estimate must be `op` `threshold`."""

    label: str
    value: Estimate
    op: Literal["<", ">"]
    threshold: float

    @property
    def outcome(self) -> Outcome:
        """How the interval compares with the threshold (see `Estimate.satisfies`)."""
        return self.value.satisfies(self.op, self.threshold)

    @property
    def point(self) -> bool:
        """Whether the mean alone satisfies the condition."""
        return self.value.point(self.op, self.threshold)


def decide(conditions: Sequence[Condition]) -> tuple[Verdict, bool]:
    """(verdict, robust) from `conditions`, judged on their intervals.

    Every condition holds -> "supported"; every one fails -> "not supported"; otherwise the means
    decide between "not supported" (none holds on the mean) and "mixed". `robust` is False when
    some interval straddles its threshold, i.e. another set of seeds could change the verdict. No
    conditions at all -> ("not decided", False).
    """
    if not conditions:
        return "not decided", False
    outcomes = [c.outcome for c in conditions]
    robust = "unsure" not in outcomes
    if all(o == "holds" for o in outcomes):
        return "supported", True
    if all(o == "fails" for o in outcomes):
        return "not supported", True
    if not any(c.point for c in conditions):
        return "not supported", robust
    return "mixed", robust
