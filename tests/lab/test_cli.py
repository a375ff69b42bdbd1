"""The command line through its real entry point: clean errors, run/runs/show/export, help, demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from gradientflow.analysis import layer_summary
from gradientflow.cli import _fmt, app
from gradientflow.spec import expand, load
from gradientflow.store import Store

from .helpers import count, one_thread, tiny_toml

# Wide enough that rich never wraps a table cell or an error line (it reads COLUMNS on each print).
WIDE = {"COLUMNS": "300"}


def invoke(*args: object) -> typer.testing.Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=WIDE)


def entry_point() -> str:
    return shutil.which("gradientflow") or str(Path(sys.executable).parent / "gradientflow")


# ---------------------------------------------------------------------------------- clean errors

MALFORMED = """
name = "broken"
[model]
depth = "three"
activation = "sigmod"
[train]
stepz = 10
"""


def test_malformed_spec_exits_2_naming_every_dotted_key(tmp_path: Path) -> None:
    spec = tmp_path / "broken.toml"
    spec.write_text(MALFORMED)
    done = subprocess.run(
        [entry_point(), "run", str(spec), "--db", str(tmp_path / "x.db")],
        capture_output=True, text=True, timeout=60, env={**os.environ, **WIDE},
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert "`model.depth`" in done.stderr and "'three'" in done.stderr
    assert "`model.activation`" in done.stderr and "did you mean 'sigmoid'" in done.stderr
    assert "`train.stepz`" in done.stderr
    assert not (tmp_path / "x.db").exists()


def test_missing_spec_file_exits_2_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such.toml"
    result = invoke("run", missing, "--db", tmp_path / "x.db")
    assert result.exit_code == 2, result.output
    assert str(missing) in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.db").exists()


def test_unknown_dataset_exits_2_listing_the_known_ones(tmp_path: Path) -> None:
    spec = tmp_path / "cifar.toml"
    spec.write_text(tiny_toml("cifar").replace('name = "synthetic_blobs"', 'name = "cifar10"'))
    result = invoke("run", spec, "--db", tmp_path / "x.db")
    assert result.exit_code == 2, result.output
    assert "`data.name`" in result.output and "'cifar10'" in result.output and "mnist5k" in result.output
    assert "Traceback" not in result.output


def test_unknown_run_prefix_exits_2(cli_db: Path) -> None:
    result = invoke("show", "zzzz", "--db", cli_db)
    assert result.exit_code == 2, result.output
    assert "no run 'zzzz'" in result.output


# ------------------------------------------------------------------------------ run / runs / show


@pytest.fixture(scope="module")
def cli_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "pair.toml"
    path.write_text(tiny_toml("pair", steps=40, every=5, sweep='"model.norm" = ["none", "batch"]'))
    return path


@pytest.fixture(scope="module")
def cli_db(cli_spec: Path) -> Path:
    db = cli_spec.parent / "cli.db"
    with one_thread():
        result = invoke("run", cli_spec, "--db", db)
    assert result.exit_code == 0, result.output
    assert "2 run(s), 0 already stored, 2 to do" in result.output
    assert result.output.count(": finished") == 2
    return db


def run_ids(spec: Path) -> list[str]:
    return [run.run_id for run in expand(load(spec))]


def test_run_twice_skips_what_is_stored(cli_spec: Path, cli_db: Path) -> None:
    before = count(cli_db, "SELECT COUNT(*) FROM layer_stats")
    result = invoke("run", cli_spec, "--db", cli_db)
    assert result.exit_code == 0, result.output
    assert "2 run(s), 2 already stored, 0 to do" in result.output
    assert count(cli_db, "SELECT COUNT(*) FROM layer_stats") == before


def test_runs_lists_status_and_final_test_accuracy(cli_spec: Path, cli_db: Path) -> None:
    result = invoke("runs", "--db", cli_db)
    assert result.exit_code == 0, result.output
    assert "test acc" in result.output
    with Store(cli_db, readonly=True) as store:
        metrics = store.metrics_frame()
    lines = result.output.splitlines()
    for run_id in run_ids(cli_spec):
        (line,) = [text for text in lines if run_id[:8] in text]
        assert "finished" in line
        accuracy = metrics[(metrics["run_id"] == run_id) & (metrics["name"] == "test_accuracy")]
        final = accuracy.sort_values("step")["value"].iloc[-1]
        assert accuracy["step"].max() == 40
        assert _fmt(float(final)) in line


def test_runs_on_an_empty_database(tmp_path: Path) -> None:
    Store(tmp_path / "empty.db").close()
    result = invoke("runs", "--db", tmp_path / "empty.db")
    assert result.exit_code == 0 and "no runs in" in result.output


def test_show_prefix_prints_each_layer_from_first_to_last_step(cli_spec: Path, cli_db: Path) -> None:
    run_id = run_ids(cli_spec)[0]
    result = invoke("show", run_id[:6], "--db", cli_db)
    assert result.exit_code == 0, result.output
    assert run_id in result.output and "status finished" in result.output
    assert "per layer at step 0 -> step 35" in result.output
    with Store(cli_db, readonly=True) as store:
        summary = layer_summary(store.layer_stats_frame([run_id]))
    lines = result.output.splitlines()
    assert len(summary) == 7  # fc1 act1 fc2 act2 fc3 act3 out
    for row in summary.to_dict("records"):
        (line,) = [text for text in lines if f" {row['layer']} " in text]
        if row["kind"] == "activation":
            assert f"{_fmt(row['grad_rms_init'])} -> {_fmt(row['grad_rms_final'])}" in line
        else:
            assert f"{_fmt(row['update_ratio_init'])} -> {_fmt(row['update_ratio_final'])}" in line


def test_export_csv_row_counts_match_the_store(cli_spec: Path, cli_db: Path, tmp_path: Path) -> None:
    ids = run_ids(cli_spec)
    out = tmp_path / "out"
    result = invoke("export", *(i[:7] for i in ids), "--format", "csv", "-o", out, "--db", cli_db)
    assert result.exit_code == 0, result.output
    stats, metrics = pd.read_csv(out / "layer_stats.csv"), pd.read_csv(out / "metrics.csv")
    assert len(stats) == count(cli_db, "SELECT COUNT(*) FROM layer_stats") > 0
    assert len(metrics) == count(cli_db, "SELECT COUNT(*) FROM metrics") > 0
    assert set(stats["run_id"]) == set(metrics["run_id"]) == set(ids)
    assert f"({len(stats)} rows)" in result.output
    one = tmp_path / "one"
    result = invoke("export", ids[1], "-o", one, "--db", cli_db)
    assert result.exit_code == 0, result.output
    expected = count(cli_db, "SELECT COUNT(*) FROM layer_stats WHERE run_id = ?", (ids[1],))
    assert len(pd.read_csv(one / "layer_stats.csv")) == expected


def test_export_rejects_an_unknown_format(cli_spec: Path, cli_db: Path, tmp_path: Path) -> None:
    result = invoke("export", run_ids(cli_spec)[0], "--format", "xml", "-o", tmp_path / "o", "--db", cli_db)
    assert result.exit_code == 2 and "--format" in result.output and "'xml'" in result.output
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------ help, demo


def test_every_command_help_has_an_example() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert {"demo", "run", "runs", "show", "export"} <= set(commands)
    for name in commands:
        result = invoke(name, "--help")
        assert result.exit_code == 0, (name, result.output)
        assert "Example" in result.output, name


def test_demo_prints_the_per_layer_table_with_both_networks() -> None:
    result = invoke("demo", "--steps", "30")
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "grad_rms plain" in line)
    assert "grad_rms BN" in header and "saturated plain" in header and "saturated BN" in header
    rows = [line for line in result.output.splitlines() if line.strip("│ ").startswith("act")]
    assert len(rows) == 6  # one per sigmoid layer of the 6-layer MLP
    for line in rows:
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        assert len(cells) == 5 and all(cell and cell != "-" for cell in cells)
    assert "plain: first/last layer grad_rms" in result.output
    assert "batchnorm: first/last layer grad_rms" in result.output
