"""User-facing exceptions.

Every message names what was wrong (the field, file or layer), the bad value, and what
is allowed or how to fix it. Only `cli` turns them into exit codes; library users catch
them as ordinary exceptions.
"""

from __future__ import annotations

__all__ = [
    "GradientflowError",
    "SpecError",
    "DataError",
    "StoreError",
    "ProbeError",
    "ModelError",
    "TrainingError",
]


class GradientflowError(Exception):
    """Base class of every error gradientflow raises on purpose (exit code 2 in the CLI)."""


class SpecError(GradientflowError):
    """An experiment spec is malformed; `problems` lists every problem found, one per line."""

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''}{where}:\n{lines}")


class DataError(GradientflowError):
    """A data set is missing, corrupted or unknown; the message says where it looked."""


class StoreError(GradientflowError):
    """The results database cannot be opened, migrated, or does not hold what was asked."""


class ProbeError(GradientflowError):
    """The probe was used wrongly (bad layer selection, step outside the block, ...)."""


class ModelError(GradientflowError):
    """A model could not be built, or its forward pass failed (the message names the layers that ran)."""


class TrainingError(GradientflowError):
    """Training could not proceed for a reason that is not a result (divergence is a result, not this)."""
