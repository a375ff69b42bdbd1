"""The C path's fallbacks are loud: each reason the library is unavailable is named once, and the probe goes on."""

from __future__ import annotations

import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gradientflow import Probe
from gradientflow.probe import native

from .conftest import fixed_mlp, train_steps


@pytest.fixture
def fresh_native(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty cache folder and a forgotten library: the next `native.library()` compiles again."""
    monkeypatch.setenv("GRADIENTFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(native.NATIVE_ENV, raising=False)
    native.library.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    native.library.cache_clear()


def _fake_compiler(folder: Path, body: str) -> str:
    """Write an executable shell script standing for a C compiler; return its path (for $CC)."""
    path = folder / "fake-cc"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def _library_with_warnings() -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lib = native.library()
    return lib, [str(w.message) for w in caught if issubclass(w.category, native.NativeFallbackWarning)]


def test_no_compiler_is_named_with_how_to_silence_it(fresh_native: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-compiler-gradientflow")
    lib, messages = _library_with_warnings()
    assert lib is None
    assert len(messages) == 1
    assert "no C compiler found" in messages[0] and "no-such-compiler-gradientflow" in messages[0]
    assert "GRADIENTFLOW_NATIVE=0" in messages[0]


def test_a_compile_error_is_shown_shortened_and_tried_once(fresh_native: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fresh_native / "calls"
    long_tail = "x" * 5000
    monkeypatch.setenv(
        "CC",
        _fake_compiler(
            fresh_native, f"echo run >> {calls}\necho 'probe_stats.c:1: error: bad thing {long_tail}' >&2\nexit 1"
        ),
    )
    lib, messages = _library_with_warnings()
    assert lib is None
    assert len(messages) == 1
    assert "failed (exit 1)" in messages[0] and "probe_stats.c:1: error: bad thing" in messages[0]
    assert len(messages[0]) < 1000  # shortened: the 5,000-character tail is cut
    again, more = _library_with_warnings()
    assert again is None and more == []  # the failure is remembered: no second compile, no second warning
    assert calls.read_text().splitlines() == ["run"]


def test_an_unwritable_cache_folder_does_not_raise_out_of_the_probe(
    fresh_native: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = fresh_native / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GRADIENTFLOW_CACHE", str(blocker / "cache"))  # mkdir under a file fails, even for root
    model = fixed_mlp()
    warned = pytest.warns(native.NativeFallbackWarning, match="not writable.*GRADIENTFLOW_CACHE")
    with warned as caught, Probe(model) as probe:
        train_steps(model, probe, steps=2)
    assert len([w for w in caught if issubclass(w.category, native.NativeFallbackWarning)]) == 1
    assert probe.frame()["grad_rms"].notna().any()


def test_a_compiler_without_openmp_is_retried_without_it(fresh_native: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # clang as Apple ships it: -fopenmp is refused, everything else compiles
    body = """for arg in "$@"; do
  if [ "$arg" = "-fopenmp" ]; then echo "clang: error: unsupported option '-fopenmp'" >&2; exit 1; fi
done
exec cc "$@\""""
    monkeypatch.setenv("CC", _fake_compiler(fresh_native, body))
    lib, messages = _library_with_warnings()
    assert lib is not None
    assert len(messages) == 1 and "no OpenMP support" in messages[0] and "one thread" in messages[0]
    values = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    from .test_native import _order_stats

    ks = np.array([0, 10, 500, 999])
    np.testing.assert_array_equal(_order_stats(values, ks), np.sort(values)[ks])


def test_native_off_is_silent(fresh_native: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    monkeypatch.setenv("CC", "no-such-compiler-gradientflow")
    lib, messages = _library_with_warnings()
    assert lib is None and messages == []
