"""Fetch data files from mirrors with urllib, verifying each against a published SHA-256.

Nothing unverified ever lands in the cache: every file is written to a hidden temporary file
beside its destination, and the whole set is renamed into place only after every file's checksum
matched. A failure anywhere removes every temporary file, so the cache holds the complete set or
none of it (files that were already there are left alone).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from gradientflow.errors import DataError

__all__ = ["MIRRORS", "CHECKSUMS", "DOWNLOAD_TIMEOUT_S", "download_files", "sha256_of"]

#: Base URLs tried in order for each data set; a file's URL is the base followed by its name.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's mirror: torchvision tries it first
        "https://storage.googleapis.com/cvdf-datasets/mnist/",  # where TensorFlow Datasets' checksums come from
        "https://yann.lecun.com/exdb/mnist/",  # the original; often refuses scripted downloads
    ),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

#: SHA-256 (hex) of each published ``.gz`` file, from TensorFlow Datasets' url_checksums tables
#: (mnist.txt, fashion_mnist.txt). The same files have the MD5s torchvision publishes, e.g.
#: f68b3c2dcbeaaa9fbdd348bbdeb94873 for MNIST's train-images-idx3-ubyte.gz (9,912,422 bytes).
#: Debian's dataset-fashion-mnist ships re-compressed .gz files with other checksums: local
#: files are never checked against this table, only downloads are.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

#: Seconds to wait for a mirror to answer before trying the next one.
DOWNLOAD_TIMEOUT_S: float = 60.0

_CHUNK_BYTES = 1 << 20


def sha256_of(path: str | Path) -> str:
    """Return the SHA-256 of the file at `path`, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_files(
    filenames: Sequence[str],
    dest_dir: str | Path,
    *,
    mirrors: Sequence[str],
    checksums: Mapping[str, str],
    timeout_s: float | None = None,
) -> list[Path]:
    """Download every file in `filenames` into `dest_dir`, trying `mirrors` in order for each.

    Returns the paths written. A file is accepted from the first mirror whose bytes have the
    SHA-256 in `checksums`; a mirror that fails or serves other bytes is skipped. If some file
    cannot be had from any mirror, raises DataError listing every attempt (a bad checksum shows
    the expected and the received digest) and leaves no new file in `dest_dir`.
    """
    dest_dir = Path(dest_dir)
    missing = [name for name in filenames if name not in checksums]
    if missing:
        raise DataError(f"no known checksum for {', '.join(missing)}; refusing to download unverified files")
    if not mirrors:
        raise DataError(f"no mirror to download {', '.join(filenames)} from")
    dest_dir.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        for name in filenames:
            staged[name] = _fetch_verified(name, dest_dir, mirrors, checksums[name], timeout_s)
        final = []
        for name, temporary in staged.items():
            target = dest_dir / name
            os.replace(temporary, target)
            final.append(target)
        staged.clear()
        return final
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


def _fetch_verified(name: str, dest_dir: Path, mirrors: Sequence[str], expected: str, timeout_s: float | None) -> Path:
    """Return a temporary file in `dest_dir` holding `name` from the first mirror with the right bytes."""
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        handle, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest_dir)
        temporary = Path(temp_name)
        try:
            with os.fdopen(handle, "wb") as sink:
                actual = _stream(url, sink, timeout_s)
        except (urllib.error.URLError, OSError, ValueError) as error:
            # URLError covers HTTP errors (404, 403) and refused connections; ValueError a malformed URL.
            temporary.unlink(missing_ok=True)
            failures.append(f"{url}: {error}")
            continue
        if actual == expected.lower():
            return temporary
        temporary.unlink(missing_ok=True)
        failures.append(f"{url}: checksum mismatch for {name}: expected sha256 {expected}, got {actual}")
    attempts = "\n".join(f"  - {failure}" for failure in failures)
    kind = "checksum mismatch" if any("checksum mismatch" in f for f in failures) else "download failed"
    raise DataError(f"{kind}: could not download {name} from any of {len(mirrors)} mirror(s):\n{attempts}")


def _stream(url: str, sink: BinaryIO, timeout_s: float | None) -> str:
    """Copy the body at `url` into `sink`; return the SHA-256 of what was written."""
    digest = hashlib.sha256()
    timeout = DOWNLOAD_TIMEOUT_S if timeout_s is None else timeout_s
    with urllib.request.urlopen(url, timeout=timeout) as response:
        for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
            sink.write(chunk)
    return digest.hexdigest()
