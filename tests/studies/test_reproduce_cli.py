"""`gradientflow reproduce` and the reproduction framework: the registry, clean errors, the Markdown page, PNGs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradientflow.cli import app
from gradientflow.errors import GradientflowError
from gradientflow.studies.reproductions import REPRODUCTIONS, Comparison, ReproductionResult, reproduction
from gradientflow.studies.reproductions.page import new_figure, save_figure, verdict_word, write_page

WIDE = {"COLUMNS": "300"}


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], env=WIDE)


def test_unknown_name_exits_2_listing_the_known_ones(tmp_path: Path) -> None:
    entry = Path(sys.executable).parent / "gradientflow"
    done = subprocess.run(
        [str(entry), "reproduce", "ioffe2051-fig1", "-o", str(tmp_path)], capture_output=True, text=True, timeout=120,
        env={**os.environ, **WIDE},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "unknown reproduction 'ioffe2051-fig1'" in done.stderr
    for name in REPRODUCTIONS:
        assert name in done.stderr
    assert not list(tmp_path.iterdir())  # nothing written for a wrong name


@pytest.mark.parametrize("args", [["--list"], []])
def test_list_names_every_reproduction(args: list[str]) -> None:
    result = invoke("reproduce", *args)
    assert result.exit_code == 0, result.output
    for name in REPRODUCTIONS:
        assert name in result.output


def test_registry_resolves_ioffe_and_rejects_unknown() -> None:
    from gradientflow.studies.reproductions import ioffe2015

    assert reproduction("ioffe2015-fig1") is ioffe2015.reproduce
    with pytest.raises(GradientflowError, match="choose one of: ioffe2015-fig1"):
        reproduction("nope")


def _result(tmp_path: Path) -> ReproductionResult:
    figure = tmp_path / "out" / "demo" / "a.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"\x89PNG")
    return ReproductionResult(
        name="demo", title="A title", citation="Someone 2020",
        comparisons=[
            Comparison("x | y", "1", "1.0", True, "equal"),
            Comparison("z", "2", "3", False, "equal", "a cause"),
            Comparison("lr", "open", "0.5", None),
        ],
        figures=[figure], data_used="mnist5k", settings={"lr": "0.5 because"}, notes=["a note"],
    )  # fmt: skip


def test_page_counts_escapes_and_links_relative_figures(tmp_path: Path) -> None:
    result = _result(tmp_path)
    assert (result.agreed, result.disagreed) == (1, 1)
    path = write_page(result, tmp_path / "out", "gradientflow reproduce demo", 12.4, "a machine")
    page = path.read_text()
    assert path == tmp_path / "out" / "demo.md"
    assert "Made by `gradientflow reproduce demo` in 12 s on a machine." in page
    assert "**1 of 3 comparisons agree, 1 disagree.**" in page
    assert "| x \\| y | 1 | 1.0 | agrees | equal |  |" in page
    assert "| z | 2 | 3 | **disagrees** | equal | a cause |" in page
    assert "| lr | open | 0.5 | - |" in page
    assert "![a](demo/a.png)" in page
    assert "- **lr**: 0.5 because" in page and "- a note" in page
    assert [verdict_word(v) for v in (True, False, None)] == ["agrees", "**disagrees**", "-"]


def test_saved_png_is_byte_identical_for_the_same_figure(tmp_path: Path) -> None:
    paths = []
    for name in ("one.png", "two.png"):
        figure, axes = new_figure(columns=2)
        assert axes.shape == (1, 2)
        axes[0][0].plot([0, 1, 2], [1, 0, 2])
        paths.append(save_figure(figure, tmp_path / "deep" / name))
    first, second = (p.read_bytes() for p in paths)
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first == second
    assert b"Software" not in first
