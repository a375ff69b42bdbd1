"""The built wheel installs beside an existing torch and works there without a C compiler.

The fresh venv gets torch first, exactly as a user's environment has it (from constraints.txt, as
this repository's scripts install it); pip then installs the wheel with its declared dependencies
and must keep that torch. PATH holds only the venv's own bin folder, so there is no C compiler:
the probe must fall back to its torch path and say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE_SCRIPT = """
import warnings
import torch
from torch import nn
import gradientflow
from gradientflow import Probe

warnings.simplefilter("always")
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
with Probe(model) as probe:
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(torch.randn(8, 6)), torch.randint(0, 3, (8,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        probe.step()
frame = probe.frame()
assert frame["grad_rms"].notna().any(), frame
print("gradientflow", gradientflow.__version__, "from", gradientflow.__file__)
print("torch", torch.__version__)
"""


def _run(
    command: list[str], env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _pinned_torch() -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.startswith("torch=="):
            return line.split("==")[1].strip()
    raise AssertionError("constraints.txt pins no torch")


@pytest.mark.slow
def test_the_wheel_installs_beside_torch_and_runs_without_a_compiler(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)])
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "gradientflow/probe/native/probe_stats.c" in names and "gradientflow/py.typed" in names
    assert not [n for n in names if n.endswith((".so", ".dylib", ".dll"))]  # no binary built for one CPU

    venv = tmp_path / "venv"
    # nothing of the checkout on sys.path: its src/ holds the egg-info the build wrote, which pip
    # would take for an installed gradientflow
    outside = {k: v for k, v in os.environ.items() if k not in ("CC", "PYTHONPATH", "GRADIENTFLOW_NATIVE")}
    try:
        _run([sys.executable, "-m", "venv", str(venv)])
        python = str(venv / "bin" / "python")
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, "-c", str(ROOT / "constraints.txt"), "torch"], env=outside)
        _run([*pip, str(wheels[0])], env=outside)  # its dependencies as declared; torch already satisfies its range

        env = outside | {
            "PATH": str(venv / "bin"),
            "GRADIENTFLOW_CACHE": str(tmp_path / "cache"),
            "HOME": str(tmp_path),
        }
        assert shutil.which("cc", path=env["PATH"]) is None
        probe = _run([python, "-c", PROBE_SCRIPT], env=env)
        assert f"torch {_pinned_torch()}" in probe.stdout  # the user's torch was kept
        assert str(venv) in probe.stdout  # the installed copy, not the checkout
        assert "NativeFallbackWarning" in probe.stderr and "no C compiler found" in probe.stderr

        explain = _run(
            [str(venv / "bin" / "gradientflow"), "explain", "--tiny", "-o", str(tmp_path / "explain")], env=env
        )
        assert (tmp_path / "explain" / "index.html").is_file()
        assert "no C compiler found" in explain.stderr
        version = _run([str(venv / "bin" / "gradientflow"), "--version"], env=env)
        assert version.stdout.strip().endswith(probe.stdout.split()[1])
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # 1.5 GB of torch
