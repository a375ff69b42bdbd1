"""The explain page: a short answer computed from the verdicts, then one card per claim, then the runs.

Each card (``<section id="claim-N">``) holds the claim in the seed's words, the one figure that
decides it, the verdict with its rule, at most five key numbers as mean and 95% interval across
seeds, and a folded ``<details>`` with every other number and links to the runs. The runs table
is folded too, one group per experiment. One self-contained file: plotly.js and the stylesheet
inlined, nothing fetched. Opening ``index.html#only-claim-N`` shows that card alone (screenshots).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence, Set
from pathlib import Path

import pandas as pd

from gradientflow.analysis.claim_records import ClaimData, ClaimResult
from gradientflow.analysis.claims import short_answer
from gradientflow.analysis.intervals import INTERVAL_NAME, Estimate
from gradientflow.report.claim_figures import claim_figure
from gradientflow.report.page import _DRAWN_COUNTER, _PLOT_CONFIG, html_head, write_page
from gradientflow.report.tables import VERDICT_CLASSES, format_number
from gradientflow.store import Store

__all__ = ["RunGroup", "explain_html", "render_explain_page", "card_html", "estimate_html"]

#: (experiment key, title, run ids) of one group of the runs table.
RunGroup = tuple[str, str, Sequence[str]]

_CLASSES = {**VERDICT_CLASSES, "not decided": "verdict-undecided", "not applicable": "verdict-na"}

# Shows one card alone when the page is opened as index.html#only-claim-N.
_ONLY_CARD = """
(function () {
  var match = location.hash.match(/^#only-(claim-\\d+)$/);
  if (!match) { return; }
  var card = document.getElementById(match[1]);
  if (!card) { return; }
  document.body.classList.add("only-card");
  card.classList.add("shown");
  window.dispatchEvent(new Event("resize"));
})();
"""


def estimate_html(value: Estimate) -> str:
    """An estimate as the card shows it: mean, then [low, high] and the number of seeds (escaped)."""
    mean = html.escape(format_number(value.mean))
    if value.n <= 1 or value.low == value.high or not value.finite:
        return f'<span class="number">{mean}</span>'
    interval = f"[{format_number(value.low)}, {format_number(value.high)}]"
    return (
        f'<span class="number">{mean}</span> <span class="interval">{html.escape(interval)}</span>'
        f' <span class="seeds">{value.n} seeds</span>'
    )


def _verdict_badge(result: ClaimResult) -> str:
    css = _CLASSES.get(result.verdict, "verdict-mixed")
    robust = "" if result.robust or result.verdict in ("not decided", "not applicable") else " (not robust)"
    return f'<span class="verdict-badge {css}">{html.escape(result.verdict + robust)}</span>'


def _figure(result: ClaimResult, data: ClaimData | None) -> str:
    if data is None or result.verdict == "not applicable":
        return '<p class="empty">No figure: nothing was measured for this claim.</p>'
    figure = claim_figure(result.claim.figure, data)
    body = figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"figure-claim-{result.claim.id}", config=_PLOT_CONFIG
    )
    return f'<figure class="claim-figure" data-traces="{len(figure.data)}">{body}</figure>'


def _details(result: ClaimResult, known_runs: Set[str]) -> str:
    rows = []
    for condition in result.conditions:
        rows.append(
            f"<tr><td>{html.escape(condition.label)} {html.escape(condition.op)} {html.escape(format_number(condition.threshold))}</td>"
            f"<td>{estimate_html(condition.value)}</td><td class='outcome-{condition.outcome}'>{condition.outcome}</td></tr>"
        )
    numbers = "".join(
        f"<tr><td>{html.escape(label)}</td><td><span class='number'>{html.escape(format_number(value))}</span></td><td></td></tr>"
        for label, value in result.details.items()
    )
    links = ", ".join(
        f'<a href="#run-{html.escape(r)}">{html.escape(r[:8])}</a>' if r in known_runs else html.escape(r[:8])
        for r in result.run_ids
    )
    return (
        "<details class='claim-details'><summary>Every number, each rule condition, and the runs</summary>"
        f"<p>{html.escape(result.summary)}</p>"
        "<table class='numbers'><thead><tr><th>condition / number (mean of seeds)</th><th>value</th>"
        f"<th>on the interval</th></tr></thead><tbody>{''.join(rows)}{numbers}</tbody></table>"
        f"<p class='runs-of'>Experiment: {html.escape(result.claim.tested)} Runs: {links or 'none stored'}</p>"
        "</details>"
    )


def card_html(result: ClaimResult, data: ClaimData | None, known_runs: Set[str] = frozenset()) -> str:
    """One claim's card: words, figure, verdict and rule, key numbers, folded details."""
    claim = result.claim
    keys = "".join(
        f"<li><span class='label'>{html.escape(k.label)}</span>: {estimate_html(k.value)}</li>"
        for k in result.key_numbers
    )
    note = f'<p class="note">{html.escape(result.note)}</p>' if result.note else ""
    return "\n".join(
        [
            f'<section class="claim-card" id="claim-{claim.id}" data-verdict="{html.escape(result.verdict)}">',
            f"<h2>Claim {claim.id} {_verdict_badge(result)}</h2>",
            f"<blockquote>{html.escape(claim.words)}<footer>— {html.escape(claim.source)}</footer></blockquote>",
            f'<p class="tested"><strong>Tested:</strong> {html.escape(claim.tested)}</p>',
            _figure(result, data),
            f'<p class="rule"><strong>Rule:</strong> {html.escape(claim.rule)}</p>',
            f'<ul class="key-numbers">{keys}</ul>' if keys else "",
            note,
            _details(result, known_runs),
            "</section>",
        ]
    )


def _answer(results: Sequence[ClaimResult]) -> str:
    chips = "".join(
        f'<a class="chip {_CLASSES.get(r.verdict, "verdict-mixed")}" href="#claim-{r.claim.id}">'
        f"{r.claim.id}: {html.escape(r.verdict)}{'' if r.robust or r.verdict in ('not decided', 'not applicable') else ' *'}</a>"
        for r in results
    )
    fragile = [r for r in results if not r.robust and r.verdict not in ("not decided", "not applicable")]
    fragile_text = (
        "Not robust across seeds (* above): "
        + "; ".join(
            f"claim {r.claim.id} ({html.escape(r.note or 'an interval straddles its threshold')})" for r in fragile
        )
        + "."
        if fragile
        else "Every decided verdict is robust across seeds: no interval straddles its threshold."
    )
    return (
        '<section id="answer"><h2>The short answer</h2>'
        f"<p class='answer'>{html.escape(short_answer(results))}</p>"
        f'<nav class="chips">{chips}</nav><p class="meta">{fragile_text} Key numbers are the mean and the '
        f"{html.escape(INTERVAL_NAME)} (on a log scale for ratios and gradients).</p></section>"
    )


def _runs_table(runs: pd.DataFrame, metrics: pd.DataFrame, ids: Sequence[str]) -> str:
    chosen = runs[runs["run_id"].isin(list(ids))]
    spec_columns = [c for c in chosen.columns if c.startswith("spec.") and chosen[c].astype(str).nunique() > 1]
    head = ["run", *[c[5:] for c in spec_columns], "seed", "status", "steps", "final test accuracy"]
    lines = ["<table class='runs'><thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    accuracy = metrics[metrics["name"] == "test_accuracy"].sort_values("step").groupby("run_id")["value"].last()
    for record in chosen.to_dict("records"):
        run_id = str(record["run_id"])
        cells = [
            f'<td class="run-id" id="run-{html.escape(run_id)}" title="{html.escape(run_id)}">{html.escape(run_id[:12])}</td>'
        ]
        cells += [f"<td>{html.escape(format_number(record.get(c)))}</td>" for c in spec_columns]
        cells += [f"<td>{html.escape(format_number(record.get(k)))}</td>" for k in ("seed", "status", "steps_done")]
        cells.append(f"<td>{html.escape(format_number(float(accuracy.get(run_id, float('nan')))))}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    return "".join(lines)


def _runs_section(runs: pd.DataFrame, metrics: pd.DataFrame, groups: Sequence[RunGroup]) -> str:
    total = len({r for _, _, ids in groups for r in ids})
    parts = [f'<section id="runs"><details class="runs"><summary>The runs ({total}), by experiment</summary>']
    for key, title, ids in groups:
        parts.append(
            f'<details class="run-group" id="runs-{html.escape(key)}"><summary>{html.escape(key)}: {html.escape(title)} '
            f"({len(ids)} runs)</summary>{_runs_table(runs, metrics, ids)}</details>"
        )
    parts.append("</details></section>")
    return "".join(parts)


def explain_html(
    results: Sequence[ClaimResult],
    data: Mapping[int, ClaimData],
    runs: pd.DataFrame,
    metrics: pd.DataFrame,
    groups: Sequence[RunGroup],
    *,
    title: str,
    intro_html: str = "",
    source: str = "",
) -> str:
    """The explain page as one HTML string (see `render_explain_page`)."""
    known = {r for _, _, ids in groups for r in ids}
    cards = [card_html(r, data.get(r.claim.id), known) for r in results]
    meta = f"{len(known)} runs" + (f" from {source}" if source else "")
    return "\n".join(
        [
            *html_head(title, with_plotly=True),
            "<body>",
            "<main>",
            f'<header><h1>{html.escape(title)}</h1><p class="meta">{html.escape(meta)}</p></header>',
            f'<div class="intro">{intro_html}</div>' if intro_html else "",
            _answer(results),
            *cards,
            _runs_section(runs, metrics, groups),
            "<footer>Made by gradientflow from the stored runs; works offline.</footer>",
            "</main>",
            f"<script>{_DRAWN_COUNTER}</script>",
            f"<script>{_ONLY_CARD}</script>",
            "</body>",
            "</html>",
        ]
    )


def render_explain_page(
    store: Store,
    results: Sequence[ClaimResult],
    data: Mapping[int, ClaimData],
    groups: Sequence[RunGroup],
    output: Path,
    *,
    title: str,
    intro_html: str = "",
) -> Path:
    """Write the explain page of `results` (figures from `data`, runs table from `store`) to `output`.

    `groups` lists (experiment key, title, run ids) for the folded runs table; `intro_html` is
    trusted HTML placed under the title. Returns `output`; its parent folders are created.
    """
    ids = list(dict.fromkeys(r for _, _, run_ids in groups for r in run_ids))
    runs = store.runs_frame()
    runs = runs[runs["run_id"].isin(ids)]
    metrics = store.metrics_frame(ids) if ids else pd.DataFrame(columns=["run_id", "step", "name", "value"])
    page = explain_html(
        results, data, runs, metrics, groups, title=title, intro_html=intro_html, source=str(store.path)
    )
    return write_page(page, output, "the page")
