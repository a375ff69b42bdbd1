"""Fixtures for the data tests: tiny IDX sets made on the spot, and a local HTTP mirror.

No test reaches the network: `_loopback_only` refuses any URL that is not on 127.0.0.1, and
`_no_system_data` hides data sets installed on the machine (e.g. Debian's Fashion-MNIST).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gradientflow.data import idx_sets
from gradientflow.data.idx import write_idx

IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def _no_system_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idx_sets, "SYSTEM_SEARCH_PATHS", {"mnist": (), "fashion_mnist": ()})
    monkeypatch.delenv("GRADIENTFLOW_DATA", raising=False)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Proxies from the environment would route 127.0.0.1 elsewhere.
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    real_urlopen = urllib.request.urlopen

    def guarded(url, *args, **kwargs):
        host = urllib.parse.urlsplit(url if isinstance(url, str) else url.full_url).hostname
        if host != "127.0.0.1":
            raise AssertionError(f"test tried to reach the network: {url}")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


@dataclass
class IdxSet:
    """A tiny MNIST-like set written to disk: its arrays and the paths of its four files."""

    train_images: np.ndarray  # (n_train, 28, 28) uint8
    train_labels: np.ndarray  # (n_train,) uint8
    test_images: np.ndarray
    test_labels: np.ndarray
    paths: dict[str, Path]

    def sha256(self) -> dict[str, str]:
        """Return filename -> SHA-256 of each written file."""
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in self.paths.values()}


def write_idx_set(folder: Path, *, n_train: int = 20, n_test: int = 10, gz: bool = True, seed: int = 0) -> IdxSet:
    """Write a random MNIST-like set of `n_train` + `n_test` 28x28 images into `folder`."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    paths = {role: write_idx(folder / f"{IDX_STEMS[role]}{suffix}", array) for role, array in arrays.items()}
    return IdxSet(**arrays, paths=paths)


@pytest.fixture
def make_idx_set() -> object:
    """Return `write_idx_set`, so a test can write sets where it needs them."""
    return write_idx_set


@dataclass
class Mirror:
    """A local HTTP server: files under `root` are served at `url`."""

    root: Path
    url: str

    def base(self, folder: str) -> str:
        """Return the mirror base URL of `folder` under the root (with a trailing slash)."""
        return f"{self.url}/{folder}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    """Serve `tmp_path/www` on 127.0.0.1 at a free port, from a thread; shut down afterwards."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Mirror(root=root, url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
