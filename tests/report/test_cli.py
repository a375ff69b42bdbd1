"""`gradientflow report` through the real command: writes the file, prints its path, clean errors."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gradientflow.cli import app

WIDE = {"COLUMNS": "300"}


def invoke(*args: object):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, [str(a) for a in args], env=WIDE)


def test_report_of_all_runs_prints_the_path(tiny_db: Path, tmp_path: Path) -> None:
    output = tmp_path / "out" / "report.html"
    result = invoke("report", "--db", tiny_db, "-o", output)
    assert result.exit_code == 0, result.output
    assert str(output) in result.output
    assert output.read_text(encoding="utf-8").count("Plotly.newPlot") == 5


def test_report_of_chosen_runs(tiny_db: Path, tmp_path: Path) -> None:
    from gradientflow.store import Store

    with Store(tiny_db, readonly=True) as store:
        first = store.run_ids()[0]
    output = tmp_path / "one.html"
    result = invoke("report", first[:8], "--db", tiny_db, "-o", output, "--title", "One run")
    assert result.exit_code == 0, result.output
    page = output.read_text(encoding="utf-8")
    assert "1 run(s)" in page and "<h1>One run</h1>" in page


def test_missing_database_exits_2_with_a_message(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = invoke("report", "--db", missing, "-o", tmp_path / "r.html")
    assert result.exit_code == 2
    assert "no results database" in result.output and str(missing) in result.output
    assert "Traceback" not in result.output
    assert not missing.exists() and not (tmp_path / "r.html").exists()


def test_unknown_run_exits_2_listing_the_known_ones(tiny_db: Path, tmp_path: Path) -> None:
    result = invoke("report", "zzzz", "--db", tiny_db, "-o", tmp_path / "r.html")
    assert result.exit_code == 2
    assert "no run 'zzzz'" in result.output and "known runs" in result.output


def test_help_has_an_example() -> None:
    result = invoke("report", "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output and "gradientflow report" in result.output
