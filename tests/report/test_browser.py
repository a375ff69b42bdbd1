"""Open a real report in headless Chromium: no console errors, every figure drew every trace.

Skipped, with the reason, where /usr/bin/chromium is absent. Saves a screenshot into
test-artifacts/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from gradientflow.report import build_panels, render_report
from gradientflow.store import Store

from .test_tables import FINDINGS

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# No network, no profile sync, no first-run UI: the page must draw from the file alone.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
    "--disable-component-update", "--disable-sync", "--virtual-time-budget=10000",
]  # fmt: skip


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install it (apt-get install -y chromium) to check reports in a browser")
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


@pytest.fixture(scope="module")
def report(tiny_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The report file and, per figure id, how many traces its figure holds."""
    output = tmp_path_factory.mktemp("browser") / "report.html"
    with Store(tiny_db, readonly=True) as store:
        render_report(store, None, output, findings=FINDINGS, title="Browser check")
        from gradientflow.report import load_report_data

        panels = build_panels(load_report_data(store, None))
    return output, {f"panel-{p.key}": len(p.figure.data) for p in panels}


@pytest.fixture(scope="module")
def dom(report: tuple[Path, dict[str, int]], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The DOM after the page's scripts ran, and Chromium's log (console messages included)."""
    page, _ = report
    done = chromium(page, tmp_path_factory.mktemp("profile"), "--dump-dom", "--enable-logging=stderr", "--v=0")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def test_page_runs_without_console_errors(dom: tuple[str, str]) -> None:
    html, log = dom
    recorded = re.search(r'data-report-errors="([^"]*)"', html)
    assert recorded, "the error recorder did not run"
    assert json.loads(recorded.group(1).replace("&quot;", '"')) == []
    assert "Uncaught" not in log, [line for line in log.splitlines() if "Uncaught" in line]


def test_every_figure_finished_drawing(dom: tuple[str, str]) -> None:
    html, _ = dom
    figures = re.search(r'data-report-figures="(\d+)"', html)
    drawn = re.search(r'data-report-drawn="(\d+)"', html)
    assert figures and drawn
    assert int(figures.group(1)) == int(drawn.group(1)) == 5


def figure_markup(html: str) -> dict[str, str]:
    found = {}
    for match in re.finditer(r'<figure class="panel" id="([^"]+)"', html):
        found[match.group(1)] = html[match.end() : html.find("</figure>", match.end())]
    return found


def test_every_trace_drew_its_data(dom: tuple[str, str], report: tuple[Path, dict[str, int]]) -> None:
    html, _ = dom
    _, expected = report
    figures = figure_markup(html)
    assert set(figures) == set(expected)
    for key, markup in figures.items():
        assert markup.count('class="main-svg"') >= 1, key
        scatter = markup.split('class="trace scatter')[1:]
        heatmaps = re.findall(r'<g class="hm"[^>]*>\s*<image', markup)
        assert len(scatter) + len(heatmaps) == expected[key], (key, len(scatter), len(heatmaps))
        for index, trace in enumerate(scatter):
            # A drawn line is a path starting with a move ("M"); markers are "point" paths.
            assert re.search(r'class="js-line" d="M|class="point"', trace), (key, index)


def test_screenshot_reads_well(report: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    page, _ = report
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = chromium(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,3000", "--hide-scrollbars")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 50_000  # a blank page compresses to a few kB


@pytest.fixture(scope="module")
def explain_dom(explain_page, tmp_path_factory: pytest.TempPathFactory) -> str:  # type: ignore[no-untyped-def]
    """The explain page's DOM after its scripts ran."""
    page, _ = explain_page
    done = chromium(page, tmp_path_factory.mktemp("profile"), "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_explain_page_draws_every_card_figure_without_errors(explain_dom: str) -> None:
    recorded = re.search(r'data-report-errors="([^"]*)"', explain_dom)
    assert recorded and json.loads(recorded.group(1).replace("&quot;", '"')) == []
    figures = re.search(r'data-report-figures="(\d+)"', explain_dom)
    drawn = re.search(r'data-report-drawn="(\d+)"', explain_dom)
    assert figures and drawn and int(figures.group(1)) == int(drawn.group(1)) == 9
    for claim_id in range(1, 10):
        start = explain_dom.index(f'id="claim-{claim_id}"')
        card = explain_dom[start : explain_dom.index("</section>", start)]
        assert 'class="main-svg"' in card, claim_id
        expected = int(re.search(r'data-traces="(\d+)"', card).group(1))  # type: ignore[union-attr]
        drawn_traces = card.count('class="trace scatter') + card.count('class="trace bars')
        assert drawn_traces == expected > 0, (claim_id, drawn_traces, expected)
        assert re.search(r'class="js-line" d="M|class="point"', card), claim_id  # some data reached the svg


def test_one_screenshot_per_card(explain_page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page, _ = explain_page
    ARTIFACTS.mkdir(exist_ok=True)
    for claim_id in range(1, 10):
        shot = ARTIFACTS / f"claim-{claim_id}.png"
        shot.unlink(missing_ok=True)
        url = f"{Path(page).resolve().as_uri()}#only-claim-{claim_id}"
        done = subprocess.run(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
             "--window-size=1300,1000", "--hide-scrollbars", url],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert shot.exists() and shot.stat().st_size > 30_000, claim_id  # a blank card compresses to a few kB
