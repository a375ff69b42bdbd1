"""MNIST and Fashion-MNIST from their four IDX files: found on disk, or downloaded and verified.

Where files are looked for, in order (each file may be plain or ``.gz``):

1. ``data_dir/<name>/``, where downloads go (``data_dir`` defaults to ``default_data_dir()``);
2. torchvision's layout, ``data_dir/MNIST/raw/`` or ``data_dir/FashionMNIST/raw/``;
3. the system folders in `SYSTEM_SEARCH_PATHS`, e.g. where Debian's ``dataset-fashion-mnist``
   package installs Fashion-MNIST (``/usr/share/datasets/fashion-mnist``).

The first folder holding all four files wins. The standard split is kept (60,000 / 10,000) in
file order; pixels are scaled to [0, 1].
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from gradientflow.data import download as download_module
from gradientflow.data.dataset import Dataset
from gradientflow.data.idx import read_idx
from gradientflow.errors import DataError

__all__ = ["IDX_FILES", "IDX_SET_NAMES", "SYSTEM_SEARCH_PATHS", "candidate_dirs", "load_idx_set"]

#: The four files of an MNIST-like set, by role, without the optional ``.gz``.
IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

IDX_SET_NAMES: tuple[str, ...] = ("mnist", "fashion_mnist")

_TORCHVISION_FOLDERS: dict[str, str] = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}

_DESCRIPTIONS: dict[str, str] = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}

#: Folders outside `data_dir` searched last, per data set. Debian's dataset-fashion-mnist
#: installs into /usr/share/datasets/fashion-mnist; the others cover local installs and
#: other packagers. Tests replace this mapping.
SYSTEM_SEARCH_PATHS: dict[str, tuple[Path, ...]] = {
    "mnist": (Path("/usr/share/datasets/mnist"), Path("/usr/local/share/datasets/mnist")),
    "fashion_mnist": (
        Path("/usr/share/datasets/fashion-mnist"),
        Path("/usr/share/dataset-fashion-mnist"),
        Path("/usr/local/share/datasets/fashion-mnist"),
    ),
}


def candidate_dirs(name: str, data_dir: Path) -> list[Path]:
    """Return the folders searched for data set `name`, in the order they are tried."""
    return [
        data_dir / name,
        data_dir / _TORCHVISION_FOLDERS[name] / "raw",
        *SYSTEM_SEARCH_PATHS.get(name, ()),
    ]


def load_idx_set(name: str, data_dir: Path, *, download: bool = False) -> Dataset:
    """Return MNIST or Fashion-MNIST (`name`) from the first folder holding its four IDX files.

    With `download`, missing files are fetched into ``data_dir/<name>/`` and verified first.
    Raises DataError listing every folder searched, and how to get the files, when none has them.
    """
    searched = candidate_dirs(name, data_dir)
    found = _first_complete(searched)
    if found is None and download:
        found = _download(name, data_dir / name)
    if found is None:
        raise DataError(_missing_message(name, searched))
    return _dataset_from_files(name, found)


def _find_file(folder: Path, stem: str) -> Path | None:
    """Return ``folder/stem`` or ``folder/stem.gz``, whichever exists (the plain file first), else None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _files_in(folder: Path) -> dict[str, Path | None]:
    """Return each role's file in `folder`, or None where it is missing."""
    return {role: _find_file(folder, stem) for role, stem in IDX_FILES.items()}


def _first_complete(folders: list[Path]) -> dict[str, Path] | None:
    """Return the four files of the first folder holding them all, else None."""
    for folder in folders:
        files = _files_in(folder)
        if all(path is not None for path in files.values()):
            return {role: path for role, path in files.items() if path is not None}
    return None


def _download(name: str, target: Path) -> dict[str, Path]:
    """Fetch the files missing from `target`, verified; return the complete set of four."""
    created = not target.exists()
    present = _files_in(target)
    wanted = [f"{IDX_FILES[role]}.gz" for role, path in present.items() if path is None]
    try:
        download_module.download_files(
            wanted,
            target,
            mirrors=download_module.MIRRORS[name],
            checksums=download_module.CHECKSUMS[name],
        )
    except DataError:
        if created and target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # leave the cache as it was found
        raise
    files = _files_in(target)
    return {role: path for role, path in files.items() if path is not None}


def _missing_message(name: str, searched: list[Path]) -> str:
    """Return the error text for a data set found nowhere: every folder searched and how to get it."""
    lines = [
        f"dataset {name!r} ({_DESCRIPTIONS[name]}) not found; looked for its four IDX files"
        f" ({', '.join(IDX_FILES.values())}, each optionally .gz) in:"
    ]
    for folder in searched:
        present = [role for role, path in _files_in(folder).items() if path is not None]
        if not folder.is_dir():
            state = "no such folder"
        elif not present:
            state = "none of the files"
        else:
            missing = [IDX_FILES[role] for role in IDX_FILES if role not in present]
            state = f"incomplete, missing {', '.join(missing)}"
        lines.append(f"  - {folder} ({state})")
    lines.append("To get it:")
    lines.append(
        f"  - download it: set `download = true` under [data] in the spec (or load_dataset({name!r}, download=True));"
    )
    lines.append(f"  - or put the files in {searched[0]}, or set GRADIENTFLOW_DATA to a folder holding {name}/;")
    if name == "fashion_mnist":
        lines.append("  - or on Debian/Ubuntu: apt-get install dataset-fashion-mnist")
    lines.append("  - or use the offline default: mnist5k")
    return "\n".join(lines)


def _dataset_from_files(name: str, files: dict[str, Path]) -> Dataset:
    """Return the Dataset held in `files` (role -> path), pixels scaled to [0, 1]."""
    train_x, train_y = _split_arrays(files["train_images"], files["train_labels"])
    test_x, test_y = _split_arrays(files["test_images"], files["test_labels"])
    num_classes = 10  # both MNIST and Fashion-MNIST have 10 classes, whatever a small file holds
    for path, labels in ((files["train_labels"], train_y), (files["test_labels"], test_y)):
        if labels.size and int(labels.max()) >= num_classes:
            raise DataError(f"{path}: label {int(labels.max())} is out of range; {_DESCRIPTIONS[name]} has labels 0..9")
    height, width = train_x.shape[1:]
    if test_x.shape[1:] != (height, width):
        raise DataError(
            f"{files['test_images']}: images are {test_x.shape[1]}x{test_x.shape[2]},"
            f" but the training images ({files['train_images']}) are {height}x{width}"
        )
    return Dataset(
        name=name,
        train_x=_scaled(train_x),
        train_y=torch.from_numpy(train_y.astype(np.int64)),
        test_x=_scaled(test_x),
        test_y=torch.from_numpy(test_y.astype(np.int64)),
        num_classes=num_classes,
        input_shape=(1, height, width),
        source=f"{_DESCRIPTIONS[name]} IDX files in {files['train_images'].parent}",
    )


def _scaled(images: np.ndarray) -> torch.Tensor:
    """Return uint8 `images` (n, h, w) as a float32 tensor (n, 1, h, w) in [0, 1]."""
    # astype copies, so the cached read-only uint8 arrays stay untouched.
    scaled = images.astype(np.float32)
    scaled /= 255.0
    return torch.from_numpy(scaled[:, None])


def _split_arrays(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (images (n, h, w) uint8, labels (n,) uint8) of one split, checked against each other."""
    images = _cached_read(str(images_path), *_stamp(images_path))
    labels = _cached_read(str(labels_path), *_stamp(labels_path))
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected (n, height, width) uint8 images, got {images.shape} {images.dtype}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{labels_path}: expected (n,) uint8 labels, got {labels.shape} {labels.dtype}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels"
        )
    return images, labels


def _stamp(path: Path) -> tuple[int, int]:
    """Return (size in bytes, modification time in ns): a changed file misses the cache."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _cached_read(path: str, size: int, mtime_ns: int) -> np.ndarray:
    """Return the read-only array of the IDX file `path`; `size` and `mtime_ns` only key the cache."""
    array = read_idx(path)
    array.setflags(write=False)
    return array
