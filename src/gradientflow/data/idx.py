"""Read and write IDX files, the format of MNIST and Fashion-MNIST, with numpy only.

An IDX file is: two zero bytes, one byte naming the element type, one byte giving the number
of dimensions, then one big-endian uint32 per dimension, then the elements in C order, big-endian.
Files ending in ``.gz`` are read and written through gzip.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from gradientflow.errors import DataError

__all__ = ["IDX_DTYPES", "read_idx", "parse_idx", "write_idx"]

#: IDX type byte -> numpy dtype (big-endian, as stored on disk).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Return the array stored in the IDX file `path` (gzip-compressed if it ends in ``.gz``).

    The array has the file's shape and its element type in native byte order (uint8 for MNIST).
    Raises DataError naming the file when it cannot be read, is not valid gzip, or is malformed.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        # gzip reports a corrupted archive as OSError ("Not a gzipped file") or EOFError.
        raise DataError(f"cannot read IDX file {path}: {error}") from error
    return parse_idx(raw, source=str(path))


def parse_idx(raw: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Return the array encoded by the IDX bytes `raw`; `source` names them in error messages."""
    if len(raw) < 4:
        raise DataError(f"malformed IDX file {source}: {len(raw)} bytes, shorter than the 4-byte magic number")
    zero_a, zero_b, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero_a != 0 or zero_b != 0:
        raise DataError(
            f"malformed IDX file {source}: magic number {raw[:4].hex()} does not start with two zero bytes"
            " (is it an IDX file? a .gz file whose name lacks the .gz suffix?)"
        )
    if type_code not in IDX_DTYPES:
        allowed = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise DataError(f"malformed IDX file {source}: unknown element type 0x{type_code:02X}; allowed: {allowed}")
    if ndim == 0:
        raise DataError(f"malformed IDX file {source}: zero dimensions")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(
            f"malformed IDX file {source}: header of {ndim} dimensions needs {header_size} bytes, file has {len(raw)}"
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    dtype = IDX_DTYPES[type_code]
    # Python integers: 255 dimensions of up to 2^32 - 1 each overflow int64 (and wrap around in numpy).
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        shown = str(shape) if len(shape) <= 8 else f"({', '.join(map(str, shape[:8]))}, ... {len(shape)} dimensions)"
        raise DataError(
            f"malformed IDX file {source}: header says shape {shown} of {dtype.name} ({expected:,} bytes in all),"
            f" file has {len(raw):,} bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    # A native-endian copy: callers get a writable array that owns its memory.
    return data.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write `array` as an IDX file at `path` (gzip-compressed if it ends in ``.gz``); return the path.

    Used by tests and by users converting their own data; the element type must be one IDX knows.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        names = ", ".join(dtype.name for dtype in IDX_DTYPES.values())
        raise DataError(f"cannot write {path}: IDX has no element type for {array.dtype}; allowed: {names}")
    if array.ndim == 0 or array.ndim > 255:
        raise DataError(f"cannot write {path}: IDX needs 1 to 255 dimensions, array has {array.ndim}")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        # mtime=0 makes the bytes (and so their checksum) the same on every run.
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path
