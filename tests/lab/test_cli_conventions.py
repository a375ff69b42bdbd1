"""Command-line conventions: --version, option values as choices that --help lists, names from the registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gradientflow
from gradientflow.cli import app
from gradientflow.cli.lab import Backend, ExportFormat, VectorizeMode
from gradientflow.runner import BACKENDS, VECTORIZE_MODES
from gradientflow.studies.reproductions import REPRODUCTIONS

WIDE = {"COLUMNS": "300"}


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], env=WIDE)


def test_version_prints_the_package_version_through_the_entry_point() -> None:
    entry = Path(sys.executable).parent / "gradientflow"
    done = subprocess.run([str(entry), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"gradientflow {gradientflow.__version__}"


def test_vectorize_choices_are_the_runners_modes() -> None:
    assert tuple(m.value for m in VectorizeMode) == VECTORIZE_MODES


def test_backend_choices_are_the_runners_backends() -> None:
    assert tuple(b.value for b in Backend) == tuple(BACKENDS)


@pytest.mark.parametrize(
    ("command", "option", "values"),
    [("run", "--vectorize", [m.value for m in VectorizeMode]), ("export", "--format", [f.value for f in ExportFormat])],
)
def test_help_lists_an_options_choices(command: str, option: str, values: list[str]) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.lstrip("│ ").startswith(option))
    assert "|".join(values) in line


def test_a_wrong_choice_exits_2_naming_the_allowed_values(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text('name = "x"\n')
    result = invoke("run", spec, "--vectorize", "sometimes", "--db", tmp_path / "db")
    assert result.exit_code == 2
    assert "'sometimes'" in result.output and "auto" in result.output and "off" in result.output
    assert not (tmp_path / "db").exists()


def test_reproduce_help_names_every_registered_reproduction() -> None:
    result = invoke("reproduce", "--help")
    assert result.exit_code == 0, result.output
    for name in REPRODUCTIONS:
        assert name in result.output


def test_the_command_line_loads_without_torch() -> None:
    # --help and --version must stay instant: torch is imported by the commands that need it
    code = "import sys, gradientflow.cli; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
