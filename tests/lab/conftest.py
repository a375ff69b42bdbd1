"""Fixtures of the lab tests: one torch thread, so runs in this process match runner workers bit for bit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import one_thread


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # Runner workers train with one thread; the same here makes stored numbers comparable exactly,
    # and on a 2-core machine it avoids oversubscription when a subprocess trains beside us.
    with one_thread():
        yield
