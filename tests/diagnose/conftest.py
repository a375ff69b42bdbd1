"""The zoo of examples/diagnose_zoo.py, loaded as users load it, and a one-thread diagnose helper."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

from gradientflow.diagnose import DiagnoseReport, diagnose

ZOO_PATH = Path(__file__).resolve().parents[2] / "examples" / "diagnose_zoo.py"


@functools.cache
def zoo_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("diagnose_zoo_for_tests", ZOO_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def run_zoo(name: str, steps: int = 12, try_fixes: bool = False) -> DiagnoseReport:
    """Diagnose one zoo factory (cached: several tests read the same report)."""
    return diagnose(f"{ZOO_PATH}:{name}", steps=steps, try_fixes=try_fixes, threads=1)


@pytest.fixture
def zoo() -> ModuleType:
    return zoo_module()


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    """Small models train fastest on one thread; two threads on the shared 2-core machine can be 30x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
