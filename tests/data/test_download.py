"""Downloads from a local HTTP mirror: success, checksum failure (nothing cached), mirror fallback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradientflow.data import download, load_dataset
from gradientflow.data.download import download_files, sha256_of
from gradientflow.errors import DataError

GZ_NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def _files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


@pytest.fixture
def served(mirror, make_idx_set, monkeypatch: pytest.MonkeyPatch):
    """Serve a 20 + 10 image MNIST-like set under <mirror>/good/ and point MNIST's tables at it."""
    written = make_idx_set(mirror.root / "good", n_train=20, n_test=10)
    monkeypatch.setitem(download.CHECKSUMS, "mnist", written.sha256())
    monkeypatch.setitem(download.MIRRORS, "mnist", (mirror.base("good"),))
    return written


def test_download_caches_verified_files_and_loads(served, tmp_path: Path) -> None:
    cache = tmp_path / "cache"

    data = load_dataset("mnist", data_dir=cache, download=True)

    assert data.train_x.shape == (20, 1, 28, 28)
    assert data.test_x.shape == (10, 1, 28, 28)
    assert data.train_y.tolist() == served.train_labels.tolist()
    assert [path.name for path in _files_under(cache)] == sorted(GZ_NAMES)
    for name, expected in served.sha256().items():
        assert sha256_of(cache / "mnist" / name) == expected


def test_cached_files_are_used_without_network(served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    load_dataset("mnist", data_dir=cache, download=True)
    monkeypatch.setitem(download.MIRRORS, "mnist", ("http://127.0.0.1:9/nothing-here/",))

    assert load_dataset("mnist", data_dir=cache).n_train == 20
    assert load_dataset("mnist", data_dir=cache, download=True).n_train == 20


def test_corrupted_download_raises_and_caches_nothing(served, mirror, tmp_path: Path) -> None:
    corrupted = mirror.root / "good" / "t10k-labels-idx1-ubyte.gz"
    expected = sha256_of(corrupted)
    corrupted.write_bytes(corrupted.read_bytes()[:-3] + b"xyz")
    actual = sha256_of(corrupted)
    cache = tmp_path / "cache"

    with pytest.raises(DataError) as caught:
        load_dataset("mnist", data_dir=cache, download=True)

    message = str(caught.value)
    assert "checksum mismatch" in message
    assert f"expected sha256 {expected}" in message
    assert f"got {actual}" in message
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert _files_under(cache) == []  # not even the three files that were fine, nor a .part file
    assert not (cache / "mnist").exists()


def test_first_mirror_404_then_second_succeeds(served, mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(download.MIRRORS, "mnist", (mirror.base("missing"), mirror.base("good")))

    data = load_dataset("mnist", data_dir=tmp_path / "cache", download=True)

    assert data.n_train == 20 and data.n_test == 10
    assert len(_files_under(tmp_path / "cache" / "mnist")) == 4


def test_bad_mirror_then_good_mirror_recovers_from_checksum_mismatch(
    served, mirror, make_idx_set, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_idx_set(mirror.root / "stale", n_train=20, n_test=10, seed=99)  # same names, other bytes
    monkeypatch.setitem(download.MIRRORS, "mnist", (mirror.base("stale"), mirror.base("good")))

    data = load_dataset("mnist", data_dir=tmp_path / "cache", download=True)

    assert data.train_y.tolist() == served.train_labels.tolist()
    assert [p.name for p in _files_under(tmp_path / "cache")] == sorted(GZ_NAMES)


def test_every_mirror_failing_lists_the_urls_tried(
    served, mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bases = (mirror.base("missing"), mirror.base("gone"))
    monkeypatch.setitem(download.MIRRORS, "mnist", bases)

    with pytest.raises(DataError) as caught:
        load_dataset("mnist", data_dir=tmp_path / "cache", download=True)

    message = str(caught.value)
    assert "download failed" in message
    for base in bases:
        assert f"{base}train-images-idx3-ubyte.gz" in message
    assert "404" in message
    assert _files_under(tmp_path / "cache") == []


def test_only_missing_files_are_downloaded(served, mirror, make_idx_set, tmp_path: Path) -> None:
    expected = served.sha256()["train-images-idx3-ubyte.gz"]
    local = make_idx_set(tmp_path / "cache" / "mnist", n_train=20, n_test=10)
    local.paths["train_images"].unlink()
    (mirror.root / "good" / "train-labels-idx1-ubyte.gz").unlink()  # would fail if it were fetched

    data = load_dataset("mnist", data_dir=tmp_path / "cache", download=True)

    assert data.n_train == 20
    assert sha256_of(tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz") == expected


def test_download_files_directly_with_injected_tables(mirror, make_idx_set, tmp_path: Path) -> None:
    written = make_idx_set(mirror.root / "files", n_train=3, n_test=1)
    names = ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]

    paths = download_files(names, tmp_path / "dest", mirrors=[mirror.base("files")], checksums=written.sha256())

    assert [path.name for path in paths] == names
    assert [path.name for path in _files_under(tmp_path / "dest")] == sorted(names)


def test_download_refuses_files_without_checksum(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no known checksum for extra.gz"):
        download_files(["extra.gz"], tmp_path, mirrors=["http://127.0.0.1:9/"], checksums={})
    assert _files_under(tmp_path) == []


def test_unreachable_mirror_is_reported(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(DataError, match=r"http://127\.0\.0\.1:9/x/a\.gz: .*refused"):
        download_files(["a.gz"], tmp_path, mirrors=["http://127.0.0.1:9/x/"], checksums={"a.gz": "0" * 64}, timeout_s=5)
    assert _files_under(tmp_path) == []


def test_published_tables_are_complete() -> None:
    for name in ("mnist", "fashion_mnist"):
        assert sorted(download.CHECKSUMS[name]) == sorted(GZ_NAMES)
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in download.CHECKSUMS[name].values())
        assert download.MIRRORS[name] and all(base.endswith("/") for base in download.MIRRORS[name])
    assert download.MIRRORS["mnist"][0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert "https://yann.lecun.com/exdb/mnist/" in download.MIRRORS["mnist"]
    assert download.MIRRORS["fashion_mnist"] == ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
