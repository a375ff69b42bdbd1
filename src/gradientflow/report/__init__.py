"""HTML reports of stored runs: one self-contained file per report, one function per panel.

`render_report(store, run_ids, output)` writes the page; `load_report_data` reads what it shows;
the `*_panel` functions return the figures, `runs_table` / `findings_table` the HTML tables.
Reads the store only: no torch, no training.
"""

from gradientflow.report.claim_figures import FIGURES, claim_figure
from gradientflow.report.data import ReportData, load_report_data, run_labels
from gradientflow.report.explain_page import explain_html, render_explain_page
from gradientflow.report.page import DEFAULT_TITLE, build_panels, render_report, report_html
from gradientflow.report.panels import (
    MAX_SIDE_BY_SIDE,
    Panel,
    gradient_heatmap_panel,
    gradient_profile_panel,
    metrics_panel,
    percentile_panel,
    saturation_panel,
)
from gradientflow.report.tables import findings_table, format_number, runs_table

__all__ = [
    "DEFAULT_TITLE",
    "FIGURES",
    "claim_figure",
    "explain_html",
    "render_explain_page",
    "MAX_SIDE_BY_SIDE",
    "Panel",
    "ReportData",
    "build_panels",
    "findings_table",
    "format_number",
    "gradient_heatmap_panel",
    "gradient_profile_panel",
    "load_report_data",
    "metrics_panel",
    "percentile_panel",
    "render_report",
    "report_html",
    "run_labels",
    "runs_table",
    "saturation_panel",
]
