"""The public API surface, pinned: a name added to or dropped from `gradientflow.__all__` is a decision."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import gradientflow

PUBLIC = ["Probe", "tap", "register_activation", "register_norm", "watch", "__version__"]


def test_all_is_pinned() -> None:
    assert gradientflow.__all__ == PUBLIC


def test_every_public_name_resolves() -> None:
    for name in PUBLIC:
        assert getattr(gradientflow, name) is not None, name
    assert inspect.isclass(gradientflow.Probe) and callable(gradientflow.tap) and callable(gradientflow.watch)


def test_type_checkers_see_every_public_name() -> None:
    # the lazy __getattr__ is invisible to them: each name needs an import under TYPE_CHECKING
    tree = ast.parse(Path(gradientflow.__file__).read_text())
    guarded = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for child in node.body
        if isinstance(child, ast.ImportFrom)
        for alias in child.names
    }
    assert set(PUBLIC) - {"__version__"} <= guarded


def test_importing_gradientflow_stays_light() -> None:
    code = "import sys, gradientflow; assert 'torch' not in sys.modules; print(gradientflow.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == gradientflow.__version__
