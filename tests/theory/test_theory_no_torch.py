"""The theory package must stay importable without torch: analysis and report depend on it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gradientflow.theory

PACKAGE = Path(gradientflow.theory.__file__).parent


def test_no_module_in_theory_imports_torch() -> None:
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "torch"]
    assert offenders == []


def test_importing_theory_does_not_load_torch() -> None:
    code = "import sys, gradientflow.theory; print('torch' in sys.modules)"
    src = str(PACKAGE.parents[1])
    command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {src!r}); {code}"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_public_api_is_exported() -> None:
    for name in gradientflow.theory.__all__:
        assert hasattr(gradientflow.theory, name), name
