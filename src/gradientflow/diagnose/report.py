"""What `diagnose` hands back: the diagnosis, ranked fixes, tried fixes, and how the run went; as text or JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..analysis.verdicts import Diagnosis, Problem
from ..formatting import format_number as _number
from .fixes import Fix

__all__ = [
    "TriedFix",
    "UntriedFix",
    "DiagnoseReport",
    "table_header",
    "table_rows",
    "format_table",
    "format_report",
    "problem_line",
    "run_lines",
    "first_to_last_ratio",
]


def _at(value: Any, step: Any, digits: int = 3) -> str:
    """Return "value @step", or "-" when the value was never measured."""
    text = _number(value, digits)
    return text if text == "-" or step is None or step != step else f"{text} @{int(step)}"


def table_header(diagnosis: Diagnosis) -> tuple[str, ...]:
    """Return the verdict table's column names; the first and last recorded steps name the init and end columns."""
    first, last = diagnosis.window
    return (
        "layer",
        "role",
        "act",
        f"grad_rms@{first}",
        f"grad_rms@{last}",
        "worst rel.grad",
        f"sat@{first}",
        f"sat@{last}",
        f"dead@{first}",
        f"dead@{last}",
        "max update",
        "start",
        "end",
    )


def _end_cell(row: Any) -> str:
    # a problem that appeared during the run says when
    if row.verdict_end != "healthy" and row.verdict_end != row.verdict_start and row.verdict == row.verdict_end:
        return f"{row.verdict_end} (from {int(row.onset)})"
    return str(row.verdict_end)


def table_rows(diagnosis: Diagnosis) -> list[tuple[str, ...]]:
    """Return the verdict table as strings, one tuple per layer in forward order (columns: `table_header`).

    grad_rms at the first and the last recorded step (dL/d pre-activation, the loss's units);
    the worst relative gradient (grad_rms over the group's last layer's, furthest from 1) with its
    step; saturated and dead fractions at both ends; the largest update ratio ||dW||/||W|| with its
    step; the layer's verdict over the first and the last `window` records.
    """
    rows = []
    for row in diagnosis.table.itertuples(index=False):
        stream = row.role == "stream"  # a linear tap: no activation, nothing to saturate
        activation = row.activation if isinstance(row.activation, str) and not stream else "-"
        fractions = (
            ("-",) * 4
            if stream
            else tuple(
                _number(v, 2)
                for v in (
                    row.saturated_frac_init,
                    row.saturated_frac_end,
                    row.dead_units_frac_init,
                    row.dead_units_frac_end,
                )
            )
        )
        rows.append(
            (
                row.layer,
                row.role,
                activation,
                _number(row.grad_rms_init),
                _number(row.grad_rms_end),
                _at(row.relative_grad_worst, row.relative_grad_worst_step, 2),
                *fractions,
                _at(row.update_ratio_worst, row.update_ratio_worst_step, 2),
                str(row.verdict_start),
                _end_cell(row),
            )
        )
    return rows


def format_table(diagnosis: Diagnosis) -> str:
    """Return the verdict table as aligned plain text (one line per layer)."""
    header = table_header(diagnosis)
    rows = [header, *table_rows(diagnosis)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def problem_line(problem: Problem, root: bool) -> str:
    """Return one line naming a problem, its first layer, its onset step and whether it lasts to the end."""
    lasting = "still at the end" if problem.at_end else "gone by the end"
    if root:
        return f"verdict: {problem.verdict}, first at {problem.layer} (from step {problem.step}; {lasting})"
    return f"also: {problem.verdict} at {problem.layer} from step {problem.step} ({lasting})"


def run_lines(diagnosis: Diagnosis) -> list[str]:
    """Return how the run starts and how it ends, each with its recorded steps."""
    (a, b), (c, d) = diagnosis.start_steps, diagnosis.end_steps
    return [f"start (steps {a}-{b}): {diagnosis.start}", f"end (steps {c}-{d}): {diagnosis.end}"]


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
            "start": self.diagnosis.start,
            "end": self.diagnosis.end,
            "problem": self.diagnosis.problem.to_dict() if self.diagnosis.problem else None,
            "final_loss": None if math.isnan(self.final_loss) else self.final_loss,
            "diverged_at": self.diverged_at,
            "layers": self.diagnosis.to_dict()["layers"],
        }


@dataclass(frozen=True)
class UntriedFix:
    """An automatic fix `--try-fixes` could not apply to this model, and why (e.g. functional activations)."""

    fix: Fix
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"fix": self.fix.to_dict(), "reason": self.reason}


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
    untried: tuple[UntriedFix, ...] = field(default=())  # automatic fixes that could not be applied here
    recorded: tuple[int, ...] = field(default=())  # the steps the probe recorded

    @property
    def verdict(self) -> str:
        """Return the root verdict: healthy or the first problem's."""
        return self.diagnosis.verdict

    def problems(self) -> list[str]:
        """Return every problem found (root first), without duplicates."""
        return list(dict.fromkeys(p.verdict for p in self.diagnosis.problems))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document `--json` writes."""
        return {
            "target": self.target,
            "steps": self.steps,
            "steps_done": self.steps_done,
            "recorded_steps": list(self.recorded),
            "diverged_at": self.diverged_at,
            "seconds": round(self.seconds, 3),
            "final_loss": None if math.isnan(self.final_loss) else self.final_loss,
            **self.diagnosis.to_dict(),
            "problems": self.problems(),
            "fixes": [f.to_dict() for f in self.fixes],
            "tried": [t.to_dict() for t in self.tried],
            "untried": [u.to_dict() for u in self.untried],
        }


def format_report(diagnosis: Diagnosis, fixes: list[Fix] | tuple[Fix, ...] = ()) -> str:
    """Return the verdict table, how the run starts and ends, each problem with its onset, the root's cause, and the ranked fixes."""
    lines = [format_table(diagnosis), "", *run_lines(diagnosis)]
    if diagnosis.problem is None:
        lines.append("verdict: healthy")
    else:
        lines.append(problem_line(diagnosis.problem, root=True))
        lines.append(f"likely cause: {diagnosis.problem.cause}")
        lines += [problem_line(other, root=False) for other in diagnosis.others]
    for fix in fixes:
        lines.append(f"fix {fix.rank}: {fix.action} ({fix.why})")
    return "\n".join(lines)


def first_to_last_ratio(diagnosis: Diagnosis) -> float:
    """Return grad_rms of the first hidden layer over that of the last at the last recorded step (unitless; NaN if unknown)."""
    rows = diagnosis.table[diagnosis.table["role"].isin(["layer", "branch"])]
    return float(rows["relative_grad_end"].iloc[0]) if len(rows) else math.nan
