"""Broken user code ends cleanly: exit 2, no traceback, a message naming the phase and the user's file and line.

Each case goes through the real entry point (typer's runner, in this process: the time limit's
timer signal needs the main thread, which pytest's is).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradientflow.diagnose import diagnose
from gradientflow.diagnose.guard import DiagnoseTimeout

from .conftest import ZOO_PATH
from .test_cli import assert_clean, invoke

HEADER = "import sys, time\nimport torch\nfrom torch import nn\n\n"
DATA = "[(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(2)]"
MLP = "nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))"


def user_file(tmp_path: Path, body: str) -> tuple[Path, str]:
    """Write the user's file; return (its path, text) so a test can find the line numbers of its statements."""
    path = tmp_path / "mine.py"
    text = HEADER + body
    path.write_text(text)
    return path, text


def line_of(text: str, fragment: str) -> int:
    """Return the 1-based line number of the first line containing `fragment`."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if fragment in line)


def test_a_loss_function_that_raises(tmp_path: Path) -> None:
    path, text = user_file(
        tmp_path,
        "def bad_loss(output, target):\n"
        "    raise ValueError('labels must be floats')\n\n"
        f"def make():\n    return {MLP}, {DATA}, bad_loss\n",
    )
    assert_clean(
        invoke("diagnose", f"{path}:make"),
        "the loss function at step 0 failed",
        f"mine.py:{line_of(text, 'raise ValueError')} in bad_loss",
        "ValueError: labels must be floats",
    )


def test_a_forward_pass_that_fails_after_step_0(tmp_path: Path) -> None:
    path, text = user_file(
        tmp_path,
        "class Flaky(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"        self.body, self.calls = {MLP}, 0\n"
        "    def forward(self, x):\n"
        "        self.calls += 1\n"
        "        if self.calls == 4:\n"
        "            raise RuntimeError('cache went stale')\n"
        "        return self.body(x)\n\n"
        f"def make():\n    return Flaky(), {DATA}\n",
    )
    assert_clean(
        invoke("diagnose", f"{path}:make", "--steps", 10),
        "the model's forward pass at step 3 failed",
        "in (root) (Flaky)",
        f"mine.py:{line_of(text, 'raise RuntimeError')} in forward",
        "RuntimeError: cache went stale",
    )


def test_a_failure_inside_torch_names_the_module_and_the_users_line(tmp_path: Path) -> None:
    # from step 2 the batches have 5 features: torch raises inside Linear, called from the user's forward
    path, text = user_file(
        tmp_path,
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"        self.body = {MLP}\n"
        "    def forward(self, x):\n"
        "        return self.body(x)  # the call\n\n"
        "def make():\n"
        "    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))] * 2 + [(torch.randn(8, 5), torch.randint(0, 3, (8,)))]\n"
        "    return Net(), batches\n",
    )
    assert_clean(
        invoke("diagnose", f"{path}:make", "--steps", 6),
        "the model's forward pass at step 2 failed in body.0 (Linear)",
        f"mine.py:{line_of(text, '# the call')} in forward",
        "mat1 and mat2 shapes cannot be multiplied",
    )


def test_a_model_without_parameters(tmp_path: Path) -> None:
    path, _ = user_file(tmp_path, f"def make():\n    return nn.Sequential(nn.ReLU(), nn.Tanh()), {DATA}\n")
    assert_clean(
        invoke("diagnose", f"{path}:make"), "returned a model without parameters (Sequential)", "nothing to train"
    )


def test_json_into_a_missing_folder_is_refused_before_training(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "folder" / "d.json"
    result = invoke("diagnose", f"{tmp_path}/never_read.py:make", "--json", target)
    # refused up front: the factory's file (which does not exist) is never read
    assert_clean(result, f"--json {target}: the folder", "does not exist")
    assert "no file" not in result.output


def test_json_onto_a_folder_is_refused(tmp_path: Path) -> None:
    assert_clean(invoke("diagnose", f"{ZOO_PATH}:dead_relu", "--json", tmp_path), "that is a folder")


@pytest.mark.parametrize("where", ["factory", "import", "loss"])
def test_sys_exit_in_the_users_code_is_an_error_not_an_exit(tmp_path: Path, where: str) -> None:
    exits = "    sys.exit(3)  # the exit\n"
    factory = f"def make():\n{exits if where == 'factory' else ''}    return {MLP}, {DATA}, loss\n"
    loss = f"def loss(output, target):\n{exits if where == 'loss' else ''}    return nn.functional.cross_entropy(output, target)\n\n"
    module = exits.strip() + "\n\n" if where == "import" else ""
    path, text = user_file(tmp_path, module + loss + factory)
    result = invoke("diagnose", f"{path}:make", "--steps", 3)
    assert_clean(result, "called sys.exit(3)", f"mine.py:{line_of(text, '# the exit')}", "not to end the program")


@pytest.mark.parametrize(
    ("body", "unit", "function"),
    [
        ("i = 0\nwhile True:  # the hang\n    i += 1\n\ndef make():\n    pass\n", "importing", "<module>"),
        (f"def make():\n    while True:  # the hang\n        pass\n    return {MLP}, {DATA}\n", "calling", "make"),
        (
            "class Sleepy(nn.Module):\n"
            "    def __init__(self):\n"
            "        super().__init__()\n"
            f"        self.body, self.calls = {MLP}, 0\n"
            "    def forward(self, x):\n"
            "        self.calls += 1\n"
            "        if self.calls == 3:\n"
            "            try:\n"
            "                time.sleep(600)  # the hang\n"
            "            except Exception:\n"
            "                pass  # the user's own handler must not swallow the time limit\n"
            "        return self.body(x)\n\n"
            f"def make():\n    return Sleepy(), {DATA}\n",
            "step 2",
            "forward",
        ),
    ],
    ids=["import", "factory", "step"],
)
def test_code_that_never_finishes_is_stopped_by_the_timeout(
    tmp_path: Path, body: str, unit: str, function: str
) -> None:
    path, text = user_file(tmp_path, body)
    result = invoke("diagnose", f"{path}:make", "--steps", 5, "--timeout", 1)
    assert_clean(
        result, "did not finish within 1 s", f"mine.py:{line_of(text, '# the hang')} in {function}", "--timeout"
    )
    assert unit in result.output


def test_the_library_raises_the_timeout_as_a_gradientflow_error(tmp_path: Path) -> None:
    path, _ = user_file(tmp_path, f"def make():\n    time.sleep(600)\n    return {MLP}, {DATA}\n")
    with pytest.raises(DiagnoseTimeout, match=r"calling .*mine.py:make did not finish within 0.5 s"):
        diagnose(f"{path}:make", timeout=0.5)


def test_a_timeout_leaves_no_timer_behind(tmp_path: Path) -> None:
    import signal

    path, _ = user_file(tmp_path, f"def make():\n    return {MLP}, {DATA}\n")
    before = signal.getsignal(signal.SIGALRM)
    report = diagnose(f"{path}:make", steps=3, timeout=30)
    assert report.steps_done == 3
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0) and signal.getsignal(signal.SIGALRM) is before


def test_json_alone_prints_only_the_document(tmp_path: Path) -> None:
    result = invoke("diagnose", f"{ZOO_PATH}:dead_relu", "--json", "--steps", 4)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # stdout is the JSON document and nothing else
    assert document["verdict"] == "dead" and document["steps_done"] == 4
    at_end = invoke("diagnose", f"{ZOO_PATH}:dead_relu", "--steps", 4, "--json")
    assert json.loads(at_end.stdout)["recorded_steps"] == [0, 1, 2, 3]
    out = tmp_path / "d.json"
    written = invoke("diagnose", f"{ZOO_PATH}:dead_relu", "--steps", 4, "--json", out)
    assert written.exit_code == 0 and json.loads(out.read_text())["verdict"] == "dead"
    assert "Per-layer gradient flow" in written.stdout  # with a PATH the tables are printed too
