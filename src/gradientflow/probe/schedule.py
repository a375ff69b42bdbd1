"""Which optimizer steps the probe records: plain callables ``step -> bool`` (0-based steps)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..errors import ProbeError

__all__ = ["Schedule", "every", "at_steps", "as_schedule"]

Schedule = Callable[[int], bool]


def every(k: int) -> Schedule:
    """Return a schedule recording steps 0, k, 2k, ..."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ProbeError(f"every must be a whole number >= 1, got {k!r}")
    return lambda step: step % k == 0


def at_steps(steps: Iterable[int]) -> Schedule:
    """Return a schedule recording exactly the given steps."""
    chosen = frozenset(int(s) for s in steps)
    return lambda step: step in chosen


def as_schedule(value: int | Schedule) -> Schedule:
    """Return `value` as a schedule: an int k means every k-th step; a callable is used as is."""
    if callable(value):
        return value
    return every(value)
