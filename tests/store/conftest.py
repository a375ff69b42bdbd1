"""Fixtures of the store tests: a fresh database file, run records and per-layer frames."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

try:  # the package may not be installed in the test environment: use the source tree
    import gradientflow.records  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the environment was set up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from store_helpers import make_info

from gradientflow.records import RunInfo
from gradientflow.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "results.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as opened:
        yield opened


@pytest.fixture
def begun(store: Store) -> Callable[..., RunInfo]:
    """Begin a run in `store` and return its record."""

    def begin(run_id: str = "a1b2c3d4", **spec_changes: object) -> RunInfo:
        info = make_info(run_id, **spec_changes)
        store.begin_run(info)
        return info

    return begin
