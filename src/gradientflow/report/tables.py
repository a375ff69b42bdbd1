"""HTML tables of a report: the runs (only the spec keys that differ) and the checked findings.

Every cell is built from stored records or `Finding` objects and escaped; nothing here is fixed
prose about results.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from gradientflow.formatting import format_number
from gradientflow.records import Finding
from gradientflow.report.data import ReportData, final_metric

__all__ = ["findings_table", "format_number", "runs_table"]

#: Class of a verdict's cell; the stylesheet colours them green, red and amber.
VERDICT_CLASSES: dict[str, str] = {
    "supported": "verdict-supported",
    "not supported": "verdict-refuted",
    "mixed": "verdict-mixed",
}


def _cell(value: object, tag: str = "td", css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<{tag}{attribute}>{html.escape(format_number(value))}</{tag}>"


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def runs_table(data: ReportData) -> str:
    """An HTML table with one row per run: id, the differing spec keys, status, steps, final test accuracy.

    With a single run (nothing differs) the run's name stands in for the keys.
    """
    keys = list(data.differing)
    head = ["run", *(keys or ["name"]), "status", "steps done", "diverged at", "final test accuracy"]
    lines = ['<table class="runs">', "<thead><tr>", *(_cell(h, "th") for h in head), "</tr></thead>", "<tbody>"]
    for record in data.runs.to_dict("records"):
        run_id = str(record["run_id"])
        values = [record.get(f"spec.{key}") for key in keys] if keys else [record.get("name")]
        diverged = record.get("diverged_at")
        cells = [
            f'<td class="run-id" title="{html.escape(run_id)}">{html.escape(run_id[:12])}</td>',
            *(_cell(v) for v in values),
            _cell(record.get("status"), css=f"status-{html.escape(str(record.get('status')))}"),
            _cell(record.get("steps_done")),
            _cell(None if _is_missing(diverged) else int(diverged)),
            _cell(final_metric(data.metrics, run_id, "test_accuracy")),
        ]
        lines += ["<tr>", *cells, "</tr>"]
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def findings_table(findings: Sequence[Finding]) -> str:
    """An HTML table of checked claims: claim, experiment, measured numbers, verdict (coloured), summary.

    Rendered from the `Finding` records only; the rule each verdict follows is shown under the
    verdict, and the runs behind the numbers are listed by id prefix.
    """
    head = ["#", "claim", "experiment", "measured", "verdict", "summary"]
    lines = ['<table class="findings">', "<thead><tr>", *(_cell(h, "th") for h in head), "</tr></thead>", "<tbody>"]
    for finding in findings:
        measured = "".join(
            f'<li><span class="label">{html.escape(label)}</span>: '
            f'<span class="number">{html.escape(format_number(value))}</span></li>'
            for label, value in finding.measurements.items()
        )
        runs = ", ".join(html.escape(r[:8]) for r in finding.run_ids)
        experiment = html.escape(finding.experiment) + (f'<div class="runs-of">runs: {runs}</div>' if runs else "")
        css = VERDICT_CLASSES.get(finding.verdict, "verdict-mixed")
        verdict = (
            f'<td class="verdict {css}"><strong>{html.escape(finding.verdict)}</strong>'
            f'<div class="rule">rule: {html.escape(finding.rule)}</div></td>'
        )
        lines += [
            "<tr>",
            _cell(finding.claim_id),
            f"<td>{html.escape(finding.claim)}</td>",
            f"<td>{experiment}</td>",
            f'<td><ul class="measured">{measured}</ul></td>',
            verdict,
            f"<td>{html.escape(finding.summary)}</td>",
            "</tr>",
        ]
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)
