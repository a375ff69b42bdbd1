"""The whole page: one self-contained file (no network URL, plotly.js once), escaped, with findings first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradientflow.errors import GradientflowError
from gradientflow.records import Finding
from gradientflow.report import ReportData, render_report, report_html
from gradientflow.report.explain_page import render_explain_page
from gradientflow.store import Store

from .test_tables import FINDINGS

PLOTLY_BANNER = "* plotly.js v"  # first lines of the inlined library


@pytest.fixture(scope="module")
def page(tiny_db: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    output = tmp_path_factory.mktemp("page") / "nested" / "report.html"
    with Store(tiny_db, readonly=True) as store:
        written = render_report(store, None, output, findings=FINDINGS, title="Tiny <report>",
                                intro_html="<p id='intro'>hello</p>")  # fmt: skip
    assert written == output
    return output.read_text(encoding="utf-8")


def test_page_is_self_contained(page: str) -> None:
    # No attribute that loads anything from elsewhere: scripts, styles, images, fonts, frames. The
    # inlined scripts' bodies are not markup (plotly.js names URLs in strings it never fetches here).
    markup = re.sub(r"(<script\b[^>]*>).*?</script>", r"\1</script>", page, flags=re.IGNORECASE | re.DOTALL)
    loaded = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]+)""", markup, flags=re.IGNORECASE)
    assert all(link.startswith("#") for link in loaded), [link for link in loaded if not link.startswith("#")]
    assert not re.search(r"<link\b", markup, flags=re.IGNORECASE)
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", markup, flags=re.IGNORECASE)
    assert markup.count("<script") == page.count("<script")  # every script is inline
    assert page.count(PLOTLY_BANNER) == 1
    assert "cdn.plot.ly/plotly" not in page


def test_page_has_every_panel_a_caption_each_and_the_findings_first(page: str) -> None:
    for key in ("profile", "heatmap", "percentiles", "saturation", "metrics"):
        assert f'id="figure-{key}"' in page
    assert page.count("<figcaption>") == 5
    assert page.index('id="findings"') < page.index('id="runs"') < page.index('id="figure-profile"')
    assert page.count("Plotly.newPlot") == 5


def test_page_escapes_the_title_and_keeps_trusted_intro_html(page: str) -> None:
    assert "<title>Tiny &lt;report&gt;</title>" in page
    assert "<h1>Tiny &lt;report&gt;</h1>" in page
    assert "<p id='intro'>hello</p>" in page


def test_labels_from_the_spec_are_escaped_in_tables_and_figures(tiny_data: ReportData) -> None:
    labels = dict.fromkeys(tiny_data.run_ids, "<script>alert(1)</script>")
    runs = tiny_data.runs.copy()
    runs["spec.model.norm"] = "<img src=x onerror=alert(1)>"
    hostile = ReportData(runs, tiny_data.differing, labels, tiny_data.layers, tiny_data.metrics)
    html = report_html(hostile)
    assert "<script>alert(1)</script>" not in html
    assert "<img src=x" not in html


def test_no_runs_gives_a_page_without_figures(tmp_path: Path) -> None:
    with Store(tmp_path / "empty.db") as store:
        output = render_report(store, None, tmp_path / "empty.html")
    page = output.read_text(encoding="utf-8")
    assert "No runs to show." in page
    assert PLOTLY_BANNER not in page and "Plotly.newPlot" not in page


def test_a_subset_of_runs_by_prefix(tiny_store: Store, tmp_path: Path) -> None:
    run_id = tiny_store.run_ids()[0]
    page = render_report(tiny_store, [run_id[:6]], tmp_path / "one.html").read_text(encoding="utf-8")
    assert f'title="{run_id}"' in page
    assert "1 run(s)" in page


def test_an_unwritable_output_is_a_clean_error(tiny_store: Store, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(GradientflowError, match="cannot write the report"):
        render_report(tiny_store, None, blocker / "report.html")


def test_findings_come_from_the_records_only(tiny_store: Store, tmp_path: Path) -> None:
    finding = Finding(7, "claim seven", "exp", "rule", {"measured thing": 0.0001234}, "mixed", "summary seven")
    page = render_report(tiny_store, None, tmp_path / "f.html", findings=[finding]).read_text(encoding="utf-8")
    assert "claim seven" in page and "1.23e-04" in page and "<strong>mixed</strong>" in page
    assert "supported" not in page.split('id="findings"')[1].split("</section>")[0]
    no_findings = render_report(tiny_store, None, tmp_path / "n.html").read_text(encoding="utf-8")
    assert 'id="findings"' not in no_findings


def test_an_unwritable_explain_page_is_a_clean_error(tiny_store: Store, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(GradientflowError, match="cannot write the page to .*file/index.html"):
        render_explain_page(tiny_store, [], {}, [], blocker / "index.html", title="t")
