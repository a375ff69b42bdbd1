"""The probe's one-pass C statistics, compiled on first use and loaded with ctypes.

The C file is compiled once per machine into ``$GRADIENTFLOW_CACHE`` (default
``~/.cache/gradientflow``)/native/<hash of the source>/ with the system C compiler (``$CC`` or
``cc``). Without a compiler, or with ``GRADIENTFLOW_NATIVE=0``, `library()` returns None and the
probe uses its pure-torch path, which computes the same statistics with more tensor ops.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["library", "cache_dir", "pointers", "NATIVE_ENV"]

NATIVE_ENV = "GRADIENTFLOW_NATIVE"
_SOURCE = Path(__file__).with_name("probe_stats.c")
_FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fopenmp", "-std=c11"]


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


def _compile(target: Path) -> bool:
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    # compile beside the target and rename: parallel workers may compile at the same time
    handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        result = subprocess.run(
            [compiler, *_FLAGS, "-o", partial, str(_SOURCE), "-lm"], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            return False
        os.replace(partial, target)
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        if os.path.exists(partial):
            os.remove(partial)


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
        address,
        address,
        c_int,
    ]
    return lib


def pointers(tensors: Sequence[torch.Tensor | None]) -> ctypes.Array:
    """Return a C array of the tensors' data addresses (None becomes NULL), for the library's ``**`` arguments.

    The tensors must stay referenced until the call returns: the array holds only addresses.
    """
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() if t is not None else None for t in tensors])


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """Return the loaded statistics library, compiling it first if needed; None when unavailable."""
    if os.environ.get(NATIVE_ENV, "1").strip().lower() in ("0", "false", "off", "no"):
        return None
    # -march=native code may not run on another CPU sharing this home folder: key by the CPU too
    digest = hashlib.sha256(_SOURCE.read_bytes() + " ".join(_FLAGS).encode() + _cpu_signature().encode()).hexdigest()[
        :16
    ]
    target = cache_dir() / digest / "libgfprobe.so"
    if not target.exists() and not _compile(target):
        return None
    try:
        return _declare(ctypes.CDLL(str(target)))
    except OSError:
        return None
