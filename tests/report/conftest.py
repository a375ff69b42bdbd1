"""Fixtures of the report tests: one tiny sweep (plain vs batch norm) trained once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gradientflow.report import ReportData, load_report_data
from gradientflow.store import Store

# 240 examples of 16 features, depth 3, width 16, 40 steps, probe every 5: seconds, not minutes.
TINY_SPEC = {
    "name": "report-tiny",
    "model": {"arch": "mlp", "depth": 3, "width": 16, "activation": "sigmoid"},
    "data": {"name": "synthetic_blobs", "batch_size": 20, "options": {"n_train": 240, "n_test": 60, "n_features": 16}},
    "optim": {"name": "sgd", "lr": 0.1},
    "train": {"steps": 40, "eval_every": 15, "seed": 0},
    "probe": {"every": 5},
    "sweep": {"model.norm": ["none", "batch"]},
}


@pytest.fixture(scope="session")
def tiny_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results database holding two finished runs that differ only in model.norm."""
    import torch

    from gradientflow.runner import run_sweep
    from gradientflow.spec import from_dict

    db = tmp_path_factory.mktemp("report") / "tiny.db"
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2-core machine: no oversubscription beside other test processes
    try:
        result = run_sweep(from_dict(TINY_SPEC), db)
    finally:
        torch.set_num_threads(previous)
    assert not result.failed, result.outcomes
    return db


@pytest.fixture
def tiny_store(tiny_db: Path) -> Iterator[Store]:
    with Store(tiny_db, readonly=True) as store:
        yield store


@pytest.fixture
def tiny_data(tiny_store: Store) -> ReportData:
    return load_report_data(tiny_store, None)


@pytest.fixture(scope="session")
def explain_page(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The explain page of the tiny study (seconds): its path and the `ExplainResult` behind it."""
    import torch

    from gradientflow.studies.explain import explain

    output = tmp_path_factory.mktemp("explain")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = explain(output, mode="tiny", workers=1)
    finally:
        torch.set_num_threads(previous)
    return result.html_path, result
