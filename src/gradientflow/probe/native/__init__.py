"""The probe's one-pass C statistics, compiled on first use and loaded with ctypes.

The C file is compiled once per machine into ``$GRADIENTFLOW_CACHE`` (default
``~/.cache/gradientflow``)/native/<hash of the source, flags and CPU>/ with the system C compiler
(``$CC`` or ``cc``). The wheel carries only the C source: ``-march=native`` is applied here, on
the machine that runs the probe, at first use, so the library never runs on a CPU it was not
built for (the cache key includes the CPU's model and flags, for home folders shared between
machines).

When the C path is wanted but unavailable (no compiler, a compile error, an unwritable cache
folder, a library that does not load) `library()` returns None, the probe computes the same
statistics with torch (slower), and a `NativeFallbackWarning` says why, once per process; the
failure is remembered, so nothing is compiled again in that process. A compiler without OpenMP
(macOS's clang) is retried without ``-fopenmp``: the library then runs on one thread, and says so.
``GRADIENTFLOW_NATIVE=0`` chooses the torch path without a warning.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["library", "cache_dir", "pointers", "NATIVE_ENV", "NativeFallbackWarning", "NativeUnavailable"]

NATIVE_ENV = "GRADIENTFLOW_NATIVE"
_SOURCE = Path(__file__).with_name("probe_stats.c")
_OPENMP = "-fopenmp"
_FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", _OPENMP, "-std=c11")
_COMPILE_TIMEOUT_S = 120
_ERROR_CHARS = 600  # enough for the first compiler diagnostics; a full log would bury the advice
_SILENCE = f"set {NATIVE_ENV}=0 to use the torch path without this warning"


class NativeFallbackWarning(UserWarning):
    """The probe's C statistics are unavailable or degraded; the numbers are the same, only slower."""


class NativeUnavailable(Exception):
    """Why the C library could not be built or loaded (the message is the reason, for the warning)."""


def cache_dir() -> Path:
    """Folder holding compiled libraries: ``$GRADIENTFLOW_CACHE/native`` or ``~/.cache/gradientflow/native``."""
    root = os.environ.get("GRADIENTFLOW_CACHE") or Path.home() / ".cache" / "gradientflow"
    return Path(root) / "native"


def _cpu_signature() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags"))]
    return "\n".join(dict.fromkeys(wanted))


def _shortened(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 3] + "..."


def _lacks_openmp(compiler_output: str) -> bool:
    # gcc without libgomp: "cannot find -lgomp"; clang: "unsupported option '-fopenmp'"; no omp.h
    text = compiler_output.lower()
    return "openmp" in text or "omp.h" in text or "gomp" in text or "-fopenmp" in text


def _run_compiler(compiler: str, flags: Sequence[str], output: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [compiler, *flags, "-o", output, str(_SOURCE), "-lm"],
            capture_output=True,
            text=True,
            timeout=_COMPILE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as error:
        raise NativeUnavailable(f"the C compiler {compiler!r} took more than {_COMPILE_TIMEOUT_S} s") from error
    except OSError as error:
        raise NativeUnavailable(f"the C compiler {compiler!r} could not be run: {error}") from error


def _compile(target: Path, compiler: str, flags: Sequence[str]) -> None:
    """Compile the C source to `target` with `flags`; raise NativeUnavailable with the compiler's error."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # compile beside the target and rename: parallel workers may compile at the same time
        handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(handle)
    except OSError as error:
        raise NativeUnavailable(
            f"the cache folder {target.parent} is not writable ({error}); set GRADIENTFLOW_CACHE to a writable folder"
        ) from error
    try:
        result = _run_compiler(compiler, flags, partial)
        if result.returncode != 0:
            raise NativeUnavailable(
                f"{compiler} failed (exit {result.returncode}): {_shortened(result.stderr or result.stdout)}"
            )
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _library_path(flags: Sequence[str]) -> Path:
    # -march=native code may not run on another CPU sharing this home folder: key by the CPU too
    key = _SOURCE.read_bytes() + " ".join(flags).encode() + _cpu_signature().encode()
    return cache_dir() / hashlib.sha256(key).hexdigest()[:16] / "libgfprobe.so"


def _build() -> Path:
    """Return the path of a compiled library, compiling it if needed; raise NativeUnavailable."""
    full, serial = _FLAGS, tuple(f for f in _FLAGS if f != _OPENMP)
    for flags in (full, serial):
        if _library_path(flags).exists():
            return _library_path(flags)
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        source = "$CC" if os.environ.get("CC") else "cc (set $CC to choose another)"
        raise NativeUnavailable(f"no C compiler found: {compiler!r} is not on PATH ({source})")
    try:
        _compile(_library_path(full), compiler, full)
        return _library_path(full)
    except NativeUnavailable as error:
        if not _lacks_openmp(str(error)):
            raise
    _compile(_library_path(serial), compiler, serial)
    _warn(f"{compiler} has no OpenMP support, so the C statistics were built without -fopenmp and run on one thread")
    return _library_path(serial)


def _warn(reason: str) -> None:
    warnings.warn(f"gradientflow probe: {reason}. ({_SILENCE}.)", NativeFallbackWarning, stacklevel=3)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    pointers, i64, f64, c_int = ctypes.POINTER(ctypes.c_void_p), ctypes.c_int64, ctypes.c_double, ctypes.c_int
    lib.gf_pre_activation_stats.restype = None
    lib.gf_pre_activation_stats.argtypes = [
        pointers,
        i64,
        i64,
        i64,
        i64,
        ctypes.c_void_p,
        c_int,
        f64,
        c_int,
        f64,
        c_int,
        f64,
        f64,
        ctypes.c_void_p,
        ctypes.c_void_p,
        c_int,
    ]
    lib.gf_sum_sumsq.restype = None
    lib.gf_sum_sumsq.argtypes = [pointers, i64, i64, ctypes.c_void_p, c_int]
    lib.gf_unit_moments.restype = None
    lib.gf_unit_moments.argtypes = [pointers, i64, i64, i64, i64, ctypes.c_void_p, ctypes.c_void_p, c_int]
    lib.gf_snapshot.restype = None
    lib.gf_snapshot.argtypes = [
        pointers,
        pointers,
        ctypes.c_void_p,
        pointers,
        ctypes.c_void_p,
        i64,
        ctypes.c_void_p,
        c_int,
    ]
    lib.gf_update.restype = None
    lib.gf_update.argtypes = [
        pointers,
        pointers,
        pointers,
        ctypes.c_void_p,
        pointers,
        ctypes.c_void_p,
        i64,
        ctypes.c_void_p,
        ctypes.c_void_p,
        c_int,
    ]
    lib.gf_weight_table.restype = None
    lib.gf_weight_table.argtypes = [
        pointers,
        pointers,
        pointers,
        ctypes.c_void_p,
        pointers,
        ctypes.c_void_p,
        i64,
        ctypes.c_void_p,
        c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        c_int,
    ]
    lib.gf_order_stats.restype = None
    lib.gf_order_stats.argtypes = [
        pointers,
        i64,
        ctypes.c_void_p,
        i64,
        ctypes.c_void_p,
        i64,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    address = ctypes.c_void_p
    lib.gf_activation_stats.restype = None
    lib.gf_activation_stats.argtypes = [
        pointers,
        i64,
        address,
        i64,
        address,
        i64,
        i64,
        address,
        address,
        address,
        i64,
        i64,
        i64,
        c_int,
        f64,
        c_int,
        f64,
        c_int,
        f64,
        f64,
        address,
        address,
        c_int,
    ]
    return lib


def pointers(tensors: Sequence[torch.Tensor | None]) -> ctypes.Array[ctypes.c_void_p]:
    """Return a C array of the tensors' data addresses (None becomes NULL), for the library's ``**`` arguments.

    The tensors must stay referenced until the call returns: the array holds only addresses.
    """
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() if t is not None else None for t in tensors])


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """Return the loaded statistics library, compiling it first if needed; None when unavailable.

    The answer, a failure included, is kept for the process: a failed compile is tried once, and
    its `NativeFallbackWarning` is issued once. ``library.cache_clear()`` tries again.
    """
    if os.environ.get(NATIVE_ENV, "1").strip().lower() in ("0", "false", "off", "no"):
        return None
    try:
        path = _build()
        try:
            return _declare(ctypes.CDLL(str(path)))
        except OSError as error:
            raise NativeUnavailable(f"the compiled library {path} did not load: {_shortened(str(error))}") from error
    except (NativeUnavailable, OSError) as error:
        # OSError: the cache folder turned unreadable or full between the checks above; never
        # worth an exception out of probe.step()
        _warn(f"the C statistics are unavailable, so the probe uses its torch path (same numbers, slower): {error}")
        return None
