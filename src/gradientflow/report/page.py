"""Assemble the report page: one self-contained HTML file that works offline from file://.

plotly.js and the stylesheet are inlined once in <head>; each figure is a div plus the script that
draws it. Nothing is fetched: no CDN, no web font, no image URL. A small script records uncaught
errors and console.error calls on <html data-report-errors>, so a headless browser can check that
the page drew without errors.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from plotly.offline import get_plotlyjs

from gradientflow.analysis.predictions import predict_profiles
from gradientflow.errors import GradientflowError
from gradientflow.records import Finding
from gradientflow.report.data import ReportData, load_report_data
from gradientflow.report.panels import (
    Panel,
    gradient_heatmap_panel,
    gradient_profile_panel,
    metrics_panel,
    percentile_panel,
    saturation_panel,
)
from gradientflow.report.tables import findings_table, runs_table
from gradientflow.store import Store

__all__ = ["DEFAULT_TITLE", "build_panels", "render_report", "report_html", "spec_predictions"]

DEFAULT_TITLE = "Gradient flow report"

#: No mode bar link to plotly's cloud, no logo; figures follow the page's width.
_PLOT_CONFIG = {"displaylogo": False, "responsive": True, "showSendToCloud": False}

# Runs before plotly.js: every uncaught error or console.error lands on <html data-report-errors>
# (a JSON list), and <html data-report-drawn> counts the figures plotly finished drawing.
_ERROR_RECORDER = """
(function () {
  var root = document.documentElement, seen = [];
  function record(message) {
    seen.push(String(message));
    root.setAttribute("data-report-errors", JSON.stringify(seen));
  }
  root.setAttribute("data-report-errors", "[]");
  window.addEventListener("error", function (event) { record(event.message || "error"); });
  window.addEventListener("unhandledrejection", function (event) { record("unhandled rejection: " + event.reason); });
  var original = console.error;
  console.error = function () {
    record(Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
})();
"""

_DRAWN_COUNTER = """
(function () {
  var figures = document.querySelectorAll(".plotly-graph-div"), drawn = 0;
  document.documentElement.setAttribute("data-report-figures", String(figures.length));
  figures.forEach(function (figure) {
    function mark() { drawn += 1; document.documentElement.setAttribute("data-report-drawn", String(drawn)); }
    if (figure._fullLayout) { mark(); } else { figure.addEventListener("plotly_afterplot", mark, { once: true }); }
  });
})();
"""


def build_panels(data: ReportData, predicted: Mapping[str, Sequence[float]] | None = None) -> list[Panel]:
    """The report's figures in page order: profile, heatmap, percentiles, saturation, metrics.

    With `predicted` None, each run's mean-field grad_rms profile at initialization is computed
    from its spec (`analysis.predictions`) and drawn dashed; runs the theory does not cover are
    named in the caption. Pass ``{}`` to draw no predictions.
    """
    omitted: dict[str, str] = {}
    if predicted is None:
        predicted, omitted = spec_predictions(data)
    return [
        gradient_profile_panel(data, predicted, omitted),
        gradient_heatmap_panel(data),
        percentile_panel(data),
        saturation_panel(data),
        metrics_panel(data),
    ]


def spec_predictions(data: ReportData) -> tuple[dict[str, tuple[float, ...]], dict[str, str]]:
    """Return (run id -> predicted grad_rms per layer relative to the last, run id -> why none)."""
    predicted: dict[str, tuple[float, ...]] = {}
    omitted: dict[str, str] = {}
    for run_id, prediction in predict_profiles(data.runs).items():
        if prediction.relative is not None:
            predicted[run_id] = prediction.relative
        else:
            omitted[run_id] = prediction.reason
    return predicted, omitted


def html_head(title: str, with_plotly: bool) -> list[str]:
    """Return the lines from the doctype to ``</head>`` of a self-contained page: the stylesheet,
    the script that records drawing errors for the browser tests, and plotly inlined when the
    page draws figures (so it opens offline)."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>\n{_stylesheet()}\n</style>",
        f"<script>{_ERROR_RECORDER}</script>",
        *([f'<script type="text/javascript">{get_plotlyjs()}</script>'] if with_plotly else []),
        "</head>",
    ]


def _stylesheet() -> str:
    return resources.files("gradientflow.report").joinpath("assets", "report.css").read_text(encoding="utf-8")


def _figure_html(panel: Panel) -> str:
    body = panel.figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"figure-{panel.key}", config=_PLOT_CONFIG
    )
    traces = len(panel.figure.data)
    return (
        f'<figure class="panel" id="panel-{panel.key}" data-traces="{traces}">\n{body}\n'
        f"<figcaption>{html.escape(panel.caption)}</figcaption>\n</figure>"
    )


_SECTION_TITLES = {
    "profile": "Gradient-flow profile",
    "heatmap": "Gradient per layer and step",
    "percentiles": "Input distribution of the last nonlinearity",
    "saturation": "Saturation and dead units",
    "metrics": "Loss and accuracy",
}


def report_html(
    data: ReportData,
    *,
    findings: Sequence[Finding] = (),
    title: str = DEFAULT_TITLE,
    intro_html: str = "",
    source: str = "",
    predicted: Mapping[str, Sequence[float]] | None = None,
) -> str:
    """The whole report page as one HTML string (see `render_report`)."""
    panels = build_panels(data, predicted) if data.run_ids else []
    contents = [("findings", "Findings")] if findings else []
    contents += [("runs", "Runs")] + [(f"panel-{p.key}", _SECTION_TITLES.get(p.key, p.key)) for p in panels]
    meta = f"{len(data.run_ids)} run(s)" + (f" from {source}" if source else "")
    parts = [
        *html_head(title, with_plotly=bool(panels)),
        "<body>",
        "<main>",
        "<header>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(meta)}</p>',
        '<nav class="contents">'
        + "".join(f'<a href="#{key}">{html.escape(name)}</a>' for key, name in contents)
        + "</nav>",
        "</header>",
    ]
    if intro_html:
        parts.append(f'<div class="intro">{intro_html}</div>')
    if findings:
        parts += ['<section id="findings">', "<h2>Findings</h2>", findings_table(findings), "</section>"]
    parts += ['<section id="runs">', "<h2>Runs</h2>"]
    if data.run_ids:
        note = "Only the spec keys that differ between the runs are shown." if data.differing else ""
        parts += [runs_table(data), f'<p class="meta">{note}</p>' if note else ""]
    else:
        parts.append('<p class="empty">No runs to show.</p>')
    parts.append("</section>")
    for panel in panels:
        parts += [
            f'<section id="section-{panel.key}">',
            f"<h2>{html.escape(_SECTION_TITLES.get(panel.key, panel.key))}</h2>",
            _figure_html(panel),
            "</section>",
        ]
    if panels:
        parts.append(f"<script>{_DRAWN_COUNTER}</script>")
    parts += [
        "<footer>Made by gradientflow from the stored runs; works offline.</footer>",
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(part for part in parts if part)


def render_report(
    store: Store,
    run_ids: Sequence[str] | None,
    output: Path,
    *,
    findings: Sequence[Finding] = (),
    title: str = DEFAULT_TITLE,
    intro_html: str = "",
    predicted: Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """Write one self-contained HTML report of `run_ids` (all stored runs when None) to `output`.

    The file inlines plotly.js and its stylesheet, so it opens offline from file://. `findings`
    (checked claims) are tabled first; `intro_html` is trusted HTML placed under the title (the
    caller escapes anything user-typed in it); every other string is escaped. `predicted` maps run
    ids to theoretical grad_rms per activation layer relative to the last (see
    `gradient_profile_panel`); None computes them from the runs' specs (see `build_panels`).
    Returns `output`; its parent folders are created.

    >>> with Store("gradientflow.db", readonly=True) as store:  # doctest: +SKIP
    ...     render_report(store, None, Path("report.html"))
    """
    data = load_report_data(store, run_ids)
    page = report_html(
        data, findings=findings, title=title, intro_html=intro_html, source=str(store.path), predicted=predicted
    )
    return write_page(page, output, "the report")


def write_page(page: str, output: str | Path, what: str) -> Path:
    """Write the HTML `page` to `output` (its folder made if needed); return the path.

    Raises GradientflowError naming `what` ("the report", "the page") and the reason when it cannot."""
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(page, encoding="utf-8")
    except OSError as error:
        raise GradientflowError(f"cannot write {what} to {output}: {error.strerror or error}") from error
    return output
