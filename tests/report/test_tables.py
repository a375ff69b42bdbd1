"""The runs table shows only what differs; the findings table is built from Finding records alone."""

from __future__ import annotations

import re

from gradientflow.records import Finding
from gradientflow.report import ReportData, findings_table, format_number, runs_table


def header(table: str) -> list[str]:
    return re.findall(r"<th>(.*?)</th>", table)


def test_runs_table_shows_only_the_differing_spec_keys(tiny_data: ReportData) -> None:
    table = runs_table(tiny_data)
    assert header(table) == ["run", "model.norm", "status", "steps done", "diverged at", "final test accuracy"]
    assert "model.depth" not in table and "model.width" not in table and "optim.lr" not in table
    assert table.count("<tr>") == 1 + 2
    assert ">none<" in table and ">batch<" in table
    for run_id in tiny_data.run_ids:
        assert f'title="{run_id}"' in table
    accuracies = tiny_data.metrics[tiny_data.metrics["name"] == "test_accuracy"].groupby("run_id")["value"].last()
    for value in accuracies:
        assert f"<td>{format_number(float(value))}</td>" in table


def test_runs_table_of_one_run_shows_its_name(tiny_data: ReportData) -> None:
    one = ReportData(tiny_data.runs.iloc[:1], [], tiny_data.labels, tiny_data.layers, tiny_data.metrics)
    table = runs_table(one)
    assert header(table)[1] == "name"
    assert "report-tiny" in table


FINDINGS = [
    Finding(1, "BN keeps the gradient <flowing>", "sigmoid depth 20", "ratio above 0.1",
            {"grad ratio, no BN (unitless)": 1.234e-05, "grad ratio, BN (unitless)": 0.4567},
            "supported", "BN lifts the ratio from 1.23e-05 to 0.457.", ("abcdef0123456789",)),
    Finding(2, "Saturation causes vanishing", "sigmoid depth 5", "saturated_frac above 0.2",
            {"saturated fraction": 0.0123}, "not supported", "Saturation stays at 1.23%."),
    Finding(3, "BN speeds training", "3 seeds", "faster in every seed", {"seeds faster": 2.0},
            "mixed", "2 of 3 seeds train faster."),
]  # fmt: skip


def test_findings_table_shows_verdicts_numbers_and_summaries_of_the_given_findings() -> None:
    table = findings_table(FINDINGS)
    rows = table.split("<tr>")[2:]
    assert len(rows) == 3
    for row, finding in zip(rows, FINDINGS):
        assert f"<strong>{finding.verdict}</strong>" in row
        assert finding.summary in row
        for label, value in finding.measurements.items():
            assert label in row and format_number(value) in row
    assert "1.23e-05" in rows[0] and "0.457" in rows[0] and "0.0123" in rows[1]
    assert "verdict-supported" in rows[0] and "verdict-refuted" in rows[1] and "verdict-mixed" in rows[2]
    assert "abcdef01" in rows[0]  # the runs behind the numbers
    assert "rule: ratio above 0.1" in rows[0]


def test_findings_table_escapes_user_text() -> None:
    table = findings_table(FINDINGS[:1])
    assert "<flowing>" not in table and "&lt;flowing&gt;" in table


def test_findings_table_has_no_rows_but_the_given_ones() -> None:
    assert findings_table([]).count("<tr>") == 1  # the header only
    assert "supported" not in findings_table(FINDINGS[2:])


def test_format_number() -> None:
    assert format_number(float("nan")) == "-"
    assert format_number(None) == "-"
    assert format_number(3) == "3"
    assert format_number(0.5) == "0.5"
    assert format_number(1.5e-6) == "1.50e-06"
    assert format_number(25000.0) == "2.50e+04"
