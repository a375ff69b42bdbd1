"""The IDX reader against hand-built bytes, its writer round trip, and every malformed header."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradientflow.data.idx import parse_idx, read_idx, write_idx
from gradientflow.errors import DataError


def test_reads_hand_built_big_endian_file(tmp_path: Path) -> None:
    # Built byte by byte from the format's description, independently of write_idx.
    header = bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 2, 3)
    body = struct.pack(">6h", 1, -2, 300, 4, 5, -32768)
    path = tmp_path / "small-idx2-short"
    path.write_bytes(header + body)

    array = read_idx(path)

    assert array.shape == (2, 3)
    assert array.dtype == np.int16
    assert array.dtype.isnative
    assert array.tolist() == [[1, -2, 300], [4, 5, -32768]]


def test_reads_gzip_file(tmp_path: Path) -> None:
    raw = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 4) + bytes([0, 7, 255, 9])
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(raw))

    assert read_idx(path).tolist() == [0, 7, 255, 9]


def test_returned_array_is_writable_copy(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "a", np.arange(6, dtype=np.uint8).reshape(2, 3))
    array = read_idx(path)
    array[0, 0] = 42  # must not raise: callers own the array
    assert read_idx(path)[0, 0] == 0


@settings(max_examples=40, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    compressed=st.booleans(),
)
def test_write_then_read_round_trips(
    tmp_path_factory: pytest.TempPathFactory, array: np.ndarray, compressed: bool
) -> None:
    folder = tmp_path_factory.mktemp("idx")
    path = write_idx(folder / ("data.gz" if compressed else "data"), array)

    back = read_idx(path)

    assert back.shape == array.shape
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    array = np.arange(100, dtype=np.uint8)
    first = write_idx(tmp_path / "a.gz", array).read_bytes()
    second = write_idx(tmp_path / "b.gz", array).read_bytes()
    assert first == second  # so tests can pin checksums of files they make


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x00\x00", "shorter than the 4-byte magic number"),
        (bytes([1, 0, 8, 1]) + struct.pack(">I", 1) + b"\x00", "does not start with two zero bytes"),
        (bytes([0, 0, 0x07, 1]) + struct.pack(">I", 1) + b"\x00", "unknown element type 0x07"),
        (bytes([0, 0, 0x08, 0]), "zero dimensions"),
        (bytes([0, 0, 0x08, 3]) + struct.pack(">I", 2), "header of 3 dimensions needs 16 bytes, file has 8"),
        (
            bytes([0, 0, 0x08, 1]) + struct.pack(">I", 5) + b"\x00" * 4,
            "shape (5,) of uint8 (13 bytes in all), file has 12",
        ),
        (
            bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 1) + b"\x00" * 5,
            "shape (1,) of int32 (12 bytes in all), file has 13",
        ),
    ],
    ids=["too-short", "bad-magic", "bad-type", "no-dims", "truncated-header", "truncated-body", "trailing-bytes"],
)
def test_malformed_file_raises_naming_file(tmp_path: Path, raw: bytes, expected: str) -> None:
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(raw)

    with pytest.raises(DataError) as caught:
        read_idx(path)

    message = str(caught.value)
    assert str(path) in message
    assert expected in message


def test_gzip_file_without_gz_suffix_hints_at_cause(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 1, 5])))

    with pytest.raises(DataError, match="magic number 1f8b"):
        read_idx(path)


def test_corrupted_gzip_raises_data_error(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"this is not gzip at all")

    with pytest.raises(DataError, match="cannot read IDX file .*train-images-idx3-ubyte.gz"):
        read_idx(path)


def test_missing_file_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(tmp_path / "absent")


def test_parse_names_source_in_errors() -> None:
    with pytest.raises(DataError, match="malformed IDX file <payload>"):
        parse_idx(b"\x00", source="<payload>")


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no element type for int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


def test_header_whose_size_overflows_int64_is_malformed_not_a_traceback() -> None:
    # 65536^4 = 2^64 elements: in int64 the product wraps to 0, so a bare header looked complete.
    raw = bytes([0, 0, 0x08, 4]) + struct.pack(">4I", 65536, 65536, 65536, 65536)
    with pytest.raises(
        DataError,
        match=r"shape \(65536, 65536, 65536, 65536\) of uint8 \(18,446,744,073,709,551,636 bytes in all\), file has 20 bytes",
    ):
        parse_idx(raw, source="huge.idx")
