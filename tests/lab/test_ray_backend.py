"""The Ray backend on a local instance with 2 CPUs: the same stored numbers as local, a SIGKILLed worker retried."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest
from pandas.testing import assert_frame_equal

from gradientflow.errors import TrainingError
from gradientflow.runner import execute_runs, run_sweep
from gradientflow.spec import expand

from .faults import kill_own_process
from .helpers import duplicated_keys, tiny_spec
from .test_runner import stored_frames

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]
SWEEP = {"seeds": [0, 1]}


@pytest.mark.slow
def test_ray_stores_what_local_stores_and_retries_a_killed_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray workers import the fault observer from this test package, and the package from this tree.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "src"), *sys.path]))
    spec = tiny_spec("ray", sweep=SWEEP)
    runs = expand(spec)
    observe = functools.partial(kill_own_process, str(tmp_path / "kills"), 1)  # the first task's worker dies
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        outcomes = execute_runs(runs, tmp_path / "ray.db", workers=2, vectorize="off", observe=observe, backend="ray")
        grouped = run_sweep(spec, tmp_path / "ray_groups.db", workers=2, backend="ray")  # vectorized groups
    finally:
        ray.shutdown()
    assert len(list((tmp_path / "kills").iterdir())) == 1  # a worker really was SIGKILLed mid-run
    assert {o.status for o in outcomes.values()} == {"finished"} and len(outcomes) == 2
    assert grouped.failed == [] and len(grouped.outcomes) == 2
    execute_runs(runs, tmp_path / "local.db", vectorize="off")
    on_ray, local = stored_frames(tmp_path / "ray.db"), stored_frames(tmp_path / "local.db")
    assert sorted(on_ray) == sorted(local)
    for run_id in local:  # bit for bit: both train each run alone on one torch thread
        assert_frame_equal(on_ray[run_id][0], local[run_id][0], check_exact=True)
        assert_frame_equal(on_ray[run_id][1], local[run_id][1], check_exact=True)
    for db in ("ray.db", "ray_groups.db"):
        assert duplicated_keys(tmp_path / db) == {"layer_stats": 0, "metrics": 0, "histograms": 0}


def test_without_ray_the_backend_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(TrainingError, match=r"pip install 'gradientflow\[ray\]'"):
        run_sweep(tiny_spec("noray"), tmp_path / "x.db", backend="ray")


def test_the_cli_checks_backend_and_address_before_running(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gradientflow.cli import app

    from .helpers import tiny_toml

    spec = tmp_path / "s.toml"
    spec.write_text(tiny_toml("s"))
    for args, expected in (
        (["--backend", "spark"], "'spark' is not one of 'local', 'ray'"),
        (["--address", "ray://head:10001"], "--address names a Ray cluster: add --backend ray"),
    ):
        result = CliRunner().invoke(
            app, ["run", str(spec), "--db", str(tmp_path / "x.db"), *args], env={"COLUMNS": "300"}
        )
        assert result.exit_code == 2 and expected in result.output, result.output
    assert not (tmp_path / "x.db").exists()
