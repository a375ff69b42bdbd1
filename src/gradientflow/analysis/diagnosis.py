"""What a diagnosis is: its problems (each with its onset step and whether it lasts to the end) and the
per-layer table at initialization, at the end and at the worst step; JSON in and out."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .layer_table import STATE_COLUMNS

__all__ = ["Problem", "Diagnosis", "TABLE_COLUMNS", "VERDICT_COLUMNS"]

#: Per layer: its verdict over the first and the last `window` records, its first problem in time and that
#: problem's onset step (NaN when the layer stays healthy).
VERDICT_COLUMNS = ("verdict_start", "verdict_end", "verdict", "onset")
TABLE_COLUMNS: tuple[str, ...] = ("layer", "role", "activation", "weights", *STATE_COLUMNS, *VERDICT_COLUMNS)
_TEXT_COLUMNS = frozenset({"layer", "role", "activation", "weights", "verdict_start", "verdict_end", "verdict"})


@dataclass(frozen=True)
class Problem:
    """One problem: its verdict, the first layer where it shows, when it appeared and its likely cause.

    `layer` is the first layer in the direction the failing signal travels: forward order for
    saturated, dead and unstable updates; from the output back for vanishing and exploding.
    `step` is the onset: the first recorded step from which the problem shows on most of the next
    `window` records. `at_end` says whether it still shows on most of the last `window` records.
    `evidence` maps a label to a measured number (unitless ratios and fractions).
    """

    verdict: str
    layer: str
    step: int
    layers: tuple[str, ...]
    cause: str
    cause_code: str
    evidence: dict[str, float] = field(default_factory=dict)
    at_end: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (lists instead of tuples)."""
        out = asdict(self)
        out["layers"] = list(self.layers)
        out["evidence"] = {k: _jsonable(v) for k, v in self.evidence.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        """Return the problem `to_dict` described."""
        evidence = {k: math.nan if v is None else v for k, v in data["evidence"].items()}
        return cls(**{**data, "layers": tuple(data["layers"]), "evidence": evidence})


@dataclass(frozen=True)
class Diagnosis:
    """The verdict of a run: how it starts, how it ends, the root problem, later problems, the per-layer table.

    `verdict` is the root problem's (the first in time) or "healthy". `start` and `end` are the
    run's verdicts over its first and last `window` recorded steps (`start_steps`, `end_steps`:
    the first and last step of each window). `table` has one row per layer in forward order
    (columns: TABLE_COLUMNS; see `layer_states` for the numbers). `window` is the first and the
    last recorded step.
    """

    verdict: str
    problem: Problem | None
    others: tuple[Problem, ...]
    table: pd.DataFrame
    window: tuple[int, int]
    start: str = "healthy"
    end: str = "healthy"
    start_steps: tuple[int, int] = (0, 0)
    end_steps: tuple[int, int] = (0, 0)

    @property
    def problems(self) -> tuple[Problem, ...]:
        """Return every problem found, root first, in order of onset."""
        return ((self.problem,) if self.problem else ()) + self.others

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; NaN becomes None."""
        records = [{k: _jsonable(v) for k, v in row.items()} for row in self.table.to_dict("records")]
        return {
            "verdict": self.verdict,
            "start": self.start,
            "end": self.end,
            "start_steps": list(self.start_steps),
            "end_steps": list(self.end_steps),
            "problem": self.problem.to_dict() if self.problem else None,
            "others": [p.to_dict() for p in self.others],
            "window": list(self.window),
            "layers": records,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Diagnosis:
        """Return the diagnosis `to_dict` described (None back to NaN in the table)."""
        table = pd.DataFrame(data["layers"], columns=list(TABLE_COLUMNS))
        for column in TABLE_COLUMNS:
            if column not in _TEXT_COLUMNS:
                table[column] = table[column].astype(float)
        return cls(
            verdict=data["verdict"],
            problem=Problem.from_dict(data["problem"]) if data["problem"] else None,
            others=tuple(Problem.from_dict(p) for p in data["others"]),
            table=table,
            window=_pair(data["window"]),
            start=data.get("start", data["verdict"]),
            end=data.get("end", data["verdict"]),
            start_steps=_pair(data.get("start_steps", data["window"])),
            end_steps=_pair(data.get("end_steps", data["window"])),
        )


def _pair(values: list[Any]) -> tuple[int, int]:
    return int(values[0]), int(values[1])


def _jsonable(value: Any) -> Any:
    # JSON has no NaN or infinity: a diverged step's -inf pre-activation mean is written as null, like a NaN
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
