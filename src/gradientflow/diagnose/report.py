"""What `diagnose` hands back: the diagnosis, ranked fixes, tried fixes, and how the run went; as text or JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..analysis.verdicts import Diagnosis
from ..formatting import format_number as _number
from .fixes import Fix

__all__ = [
    "TriedFix",
    "DiagnoseReport",
    "table_rows",
    "TABLE_HEADER",
    "format_table",
    "format_report",
    "first_to_last_ratio",
]

TABLE_HEADER = ("layer", "role", "act", "grad_rms", "gain", "saturated", "dead", "update_ratio", "verdict")


def table_rows(diagnosis: Diagnosis) -> list[tuple[str, ...]]:
    """Return the verdict table as strings, one tuple per layer in forward order (columns: TABLE_HEADER).

    gain is the backward gain into the layer (its grad_rms over the next layer's of the same
    group); saturated and dead are fractions; numbers are medians over the diagnosis window.
    """
    rows = []
    for row in diagnosis.table.itertuples(index=False):
        stream = row.role == "stream"  # a linear tap: no activation, nothing to saturate
        activation = row.activation if isinstance(row.activation, str) and not stream else "-"
        saturated, dead = ("-", "-") if stream else (_number(row.saturated_frac, 2), _number(row.dead_units_frac, 2))
        rows.append(
            (
                row.layer,
                row.role,
                activation,
                _number(row.grad_rms),
                _number(row.gain),
                saturated,
                dead,
                _number(row.update_ratio),
                row.verdict,
            )
        )
    return rows


def format_table(diagnosis: Diagnosis) -> str:
    """Return the verdict table as aligned plain text (one line per layer)."""
    rows = [TABLE_HEADER, *table_rows(diagnosis)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


@dataclass(frozen=True)
class TriedFix:
    """A fix applied to a fresh copy of the model and rerun: what changed and the new verdict."""

    fix: Fix
    applied: tuple[str, ...]  # layers (or optimizer settings) it changed
    diagnosis: Diagnosis
    final_loss: float  # mean batch loss over the last 10 steps (nan when diverged)
    diverged_at: int | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "fix": self.fix.to_dict(),
            "applied": list(self.applied),
            "verdict": self.diagnosis.verdict,
            "problem": self.diagnosis.problem.to_dict() if self.diagnosis.problem else None,
            "final_loss": None if math.isnan(self.final_loss) else self.final_loss,
            "diverged_at": self.diverged_at,
            "layers": self.diagnosis.to_dict()["layers"],
        }


@dataclass(frozen=True)
class DiagnoseReport:
    """Everything `gradientflow diagnose` prints, for one factory."""

    target: str
    steps: int  # steps asked for
    steps_done: int
    diverged_at: int | None
    seconds: float  # training with the probe, wall clock
    final_loss: float  # mean batch loss over the last 10 steps (nan when diverged)
    diagnosis: Diagnosis
    fixes: tuple[Fix, ...]
    tried: tuple[TriedFix, ...] = field(default=())

    @property
    def verdict(self) -> str:
        """Return the root verdict: healthy or the first problem's."""
        return self.diagnosis.verdict

    def problems(self) -> list[str]:
        """Return every problem found (root first), without duplicates."""
        found = [
            p.verdict
            for p in ([self.diagnosis.problem] if self.diagnosis.problem else []) + list(self.diagnosis.others)
        ]
        return list(dict.fromkeys(found))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document `--json` writes."""
        return {
            "target": self.target,
            "steps": self.steps,
            "steps_done": self.steps_done,
            "diverged_at": self.diverged_at,
            "seconds": round(self.seconds, 3),
            "final_loss": None if math.isnan(self.final_loss) else self.final_loss,
            **self.diagnosis.to_dict(),
            "problems": self.problems(),
            "fixes": [f.to_dict() for f in self.fixes],
            "tried": [t.to_dict() for t in self.tried],
        }


def format_report(diagnosis: Diagnosis, fixes: list[Fix] | tuple[Fix, ...] = ()) -> str:
    """Return the verdict table, the root problem with its cause, and the ranked fixes, as plain text."""
    lines = [format_table(diagnosis), ""]
    start, end = diagnosis.window
    if diagnosis.problem is None:
        lines.append(f"verdict: healthy (steps {start}-{end})")
    else:
        p = diagnosis.problem
        lines.append(f"verdict: {p.verdict}, first at {p.layer} (step {p.step}; table: steps {start}-{end})")
        lines.append(f"likely cause: {p.cause}")
        for other in diagnosis.others:
            lines.append(f"also: {other.verdict} at {other.layer} from step {other.step}")
    for fix in fixes:
        lines.append(f"fix {fix.rank}: {fix.action} ({fix.why})")
    return "\n".join(lines)


def first_to_last_ratio(diagnosis: Diagnosis) -> float:
    """Return grad_rms of the first layer over that of the last (unitless; NaN if unknown), over the table's window."""
    rows = diagnosis.table[diagnosis.table["role"].isin(["layer", "branch"])]
    return float(rows["relative_grad"].iloc[0]) if len(rows) else math.nan
