"""The explain page: the short answer, one card per claim with its figure, folded details and runs."""

from __future__ import annotations

import dataclasses
import functools
import html
import re
from pathlib import Path

import pandas as pd

from gradientflow.analysis.claim_records import MAX_KEY_NUMBERS
from gradientflow.report import explain_html

from .test_page import PLOTLY_BANNER


def cards(page: str) -> dict[int, str]:
    found = {}
    for match in re.finditer(r'<section class="claim-card" id="claim-(\d+)"', page):
        found[int(match.group(1))] = page[match.end() : page.find("</section>", match.end())]
    return found


def test_one_card_per_claim_in_order_each_with_its_figure_rule_and_numbers(explain_page) -> None:  # type: ignore[no-untyped-def]
    path, result = explain_page
    page = Path(path).read_text(encoding="utf-8")
    found = cards(page)
    assert list(found) == list(range(1, 10))
    for claim_result in result.results:
        card = found[claim_result.claim.id]
        assert f'id="figure-claim-{claim_result.claim.id}"' in card
        assert html.escape(claim_result.claim.rule) in card
        assert card.count("<li>") <= MAX_KEY_NUMBERS
        assert "<details class='claim-details'>" in card
        assert f">{claim_result.verdict}" in card


def test_the_answer_comes_first_and_the_runs_are_folded_by_experiment(explain_page) -> None:  # type: ignore[no-untyped-def]
    path, result = explain_page
    page = Path(path).read_text(encoding="utf-8")
    assert page.index('id="answer"') < page.index('id="claim-1"') < page.index('id="runs"')
    runs = page[page.index('<section id="runs">') :]
    assert '<details class="runs">' in runs and " open" not in runs.split("</section>")[0]
    assert runs.count('class="run-group"') == 6
    assert page.count(PLOTLY_BANNER) == 1
    for run_id in result.study.run_ids:  # every run is linked from the table by its id
        assert f'id="run-{run_id}"' in page


def test_no_figure_draws_more_than_eight_ungrouped_traces(explain_page) -> None:  # type: ignore[no-untyped-def]
    from gradientflow.report import claim_figure

    _, result = explain_page
    for claim_result in result.results:
        data = _data_of(result, claim_result.claim.id)
        figure = claim_figure(claim_result.claim.figure, data)
        groups = {t.legendgroup or t.name for t in figure.data}
        assert len(groups) <= 8, (claim_result.claim.id, len(groups))


def _data_of(result, claim_id):  # type: ignore[no-untyped-def]
    return _all_data(str(Path(result.html_path).parent / "explain.db"))[claim_id]


@functools.cache
def _all_data(db: str):  # type: ignore[no-untyped-def]
    from gradientflow.store import Store
    from gradientflow.studies.explain import _claim_data, measure_backward, study

    with Store(db, readonly=True) as store:
        return _claim_data(store, study("tiny"), measure_backward("tiny"))


def test_the_short_answer_is_computed_from_the_verdicts(explain_page) -> None:  # type: ignore[no-untyped-def]
    _, result = explain_page
    empty = pd.DataFrame(columns=["run_id", "step", "name", "value"])
    runs = pd.DataFrame(columns=["run_id"])
    page = explain_html(result.results, {}, runs, empty, [], title="t")
    flipped = [dataclasses.replace(r, verdict="not supported", robust=True) for r in result.results]
    other = explain_html(flipped, {}, runs, empty, [], title="t")
    answer = re.search(r"<p class='answer'>(.*?)</p>", page).group(1)  # type: ignore[union-attr]
    assert answer != re.search(r"<p class='answer'>(.*?)</p>", other).group(1)  # type: ignore[union-attr]
    assert "not supported" in other


def test_a_verdict_that_is_not_robust_is_named_in_the_answer(explain_page) -> None:  # type: ignore[no-untyped-def]
    _, result = explain_page
    shaky = [
        dataclasses.replace(r, robust=r.claim.id != 4, note="x" if r.claim.id == 4 else r.note) for r in result.results
    ]
    empty = pd.DataFrame(columns=["run_id", "step", "name", "value"])
    page = explain_html(shaky, {}, pd.DataFrame(columns=["run_id"]), empty, [], title="t")
    assert "Not robust across seeds (* above): claim 4 (x)" in page
