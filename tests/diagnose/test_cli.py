"""`gradientflow diagnose` through the real entry point: tables, JSON, --fail-on exit codes, clean errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradientflow.analysis.verdicts import Diagnosis
from gradientflow.cli import app

from .conftest import ZOO_PATH

WIDE = {"COLUMNS": "300"}


def invoke(*args: object):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, [str(a) for a in args], env=WIDE)


def zoo(name: str) -> str:
    return f"{ZOO_PATH}:{name}"


def test_table_verdict_cause_and_fixes(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    result = invoke("diagnose", zoo("dead_relu"), "--steps", 5, "--json", out)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("act1" in line and "dead" in line for line in lines)
    assert "verdict: dead, first at act1" in result.output
    assert "likely cause: dead ReLUs" in result.output
    assert "1. reset the biases of fc1" in result.output
    document = json.loads(out.read_text())
    assert document["verdict"] == "dead" and document["problem"]["layer"] == "act1"
    assert [row["layer"] for row in document["layers"]][:6] == [f"act{i}" for i in range(1, 7)]
    assert document["steps_done"] == 5 and document["fixes"][0]["code"] == "init"
    assert Diagnosis.from_dict(document).to_dict() == {
        k: document[k]
        for k in ("verdict", "start", "end", "start_steps", "end_steps", "problem", "others", "window", "layers")
    }


def test_json_to_stdout_is_the_only_output() -> None:
    result = invoke("diagnose", zoo("healthy_he_relu"), "--steps", 12, "--json", "-")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["verdict"] == "healthy" and document["problem"] is None and document["problems"] == []


@pytest.mark.parametrize(("fail_on", "code"), [("vanishing", 1), ("exploding,dead", 0), ("any", 1)])
def test_fail_on_sets_the_exit_code(fail_on: str, code: int) -> None:
    result = invoke("diagnose", zoo("vanishing_sigmoid"), "--steps", 4, "--fail-on", fail_on)
    assert result.exit_code == code, result.output
    assert ("--fail-on: found vanishing" in result.output) == (code == 1)


@pytest.mark.slow  # a fresh process imports torch: 5-20 s on the shared machine
def test_fail_on_through_the_installed_command() -> None:
    command = shutil.which("gradientflow") or str(Path(sys.executable).parent / "gradientflow")
    done = subprocess.run([command, "diagnose", zoo("unstable_lr50"), "--steps", "10", "--fail-on", "unstable"], capture_output=True, text=True, timeout=120, env={**os.environ, **WIDE})  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "unstable updates" in done.stdout and "lower the learning rate from 50 to" in done.stdout


def test_unknown_fail_on_name_exits_2() -> None:
    result = invoke("diagnose", zoo("healthy_he_relu"), "--fail-on", "vanishng")
    assert result.exit_code == 2 and "'vanishng' is not a problem" in result.output and "vanishing" in result.output


def test_try_fixes_shows_before_and_after() -> None:
    result = invoke("diagnose", zoo("saturated_tanh"), "--steps", 8, "--try-fixes", "--json", "-")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["verdict"] == "saturated"
    tried = {t["fix"]["code"]: t for t in document["tried"]}
    assert set(tried) == {"init", "batchnorm"}
    assert tried["init"]["verdict"] == "healthy" and tried["init"]["applied"][:2] == ["fc1", "fc2"]
    assert tried["batchnorm"]["verdict"] == "healthy"


# ------------------------------------------------------------------------------- clean errors


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.py"
    path.write_text("import torch\nfrom torch import nn\n" + text)
    return path


def assert_clean(result, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_missing_file(tmp_path: Path) -> None:
    assert_clean(invoke("diagnose", f"{tmp_path}/nope.py:make"), "no file", "nope.py")


def test_missing_colon() -> None:
    assert_clean(invoke("diagnose", "examples/diagnose_zoo.py"), "is not FILE.py:FACTORY")


def test_unknown_factory_lists_the_functions(tmp_path: Path) -> None:
    path = write(tmp_path, "def make_model():\n    return nn.Linear(2, 2), []\n")
    assert_clean(invoke("diagnose", f"{path}:make"), "has no 'make'", "make_model")


def test_unimportable_module() -> None:
    assert_clean(invoke("diagnose", "no_such_package.models:make"), "cannot import module 'no_such_package.models'")


def test_package_module_factory_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "def make():\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert_clean(invoke("diagnose", "mine:make"), "mine:make returned a int", "(model, batches)")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return nn.Linear(2, 2)", "returned a Linear; a factory returns (model, batches)"),
        ("return 'model', []", "returned a str as the model"),
        ("return nn.Linear(2, 2), 5", "returned a int as batches"),
        ("return nn.Linear(2, 2), [], 'mse'", "returned a str as the loss function"),
        ("return nn.Linear(2, 2), [], None, 'sgd'", "returned a str as the optimizer"),
        ("return {'model': nn.Linear(2, 2)}", "returned a dict with keys ['model']"),
        ("return nn.Sequential(nn.Linear(2, 2), nn.ReLU()), []", "returned no batches"),
        ("raise RuntimeError('boom')", "calling"),
    ],
)
def test_bad_return_values(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, f"def make():\n    {body}\n")
    assert_clean(invoke("diagnose", f"{path}:make"), message)


def test_a_failing_first_call_names_the_layers_that_ran(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "def make():\n"
        "    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(32, 4))\n"  # 16 != 32
        "    return model, [(torch.randn(5, 8), torch.randint(0, 4, (5,)))]\n",
    )
    assert_clean(
        invoke("diagnose", f"{path}:make"),
        "failed in 2 on input tensor(5, 8)",
        "layers that ran: 0, 1",
        "mat1 and mat2 shapes cannot be multiplied",
    )


def test_user_names_are_printed_intact(tmp_path: Path) -> None:
    # rich would turn "mine.py:smile:" into an emoji and "[/x]" into markup
    path = write(
        tmp_path,
        "def smile():\n"
        "    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))\n"
        "    return model, [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]\n",
    )
    result = invoke("diagnose", f"{path}:smile", "--steps", 3)
    assert result.exit_code == 0, result.output
    assert f"{path}:smile: 3 steps" in result.output.replace("\n", "")
