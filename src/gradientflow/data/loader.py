"""One entry point for every data set: `load_dataset(name, ...)`, and where files are kept."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gradientflow.data.bundled import load_digits, load_mnist5k
from gradientflow.data.dataset import Dataset, check_options
from gradientflow.data.idx_sets import load_idx_set
from gradientflow.data.synthetic import make_blobs, make_teacher
from gradientflow.errors import DataError

__all__ = ["DATASET_NAMES", "DEFAULT_DATASET", "DATA_DIR_ENV", "default_data_dir", "load_dataset"]

#: Every name `load_dataset` accepts. The first is the default: it needs no network and no files.
DATASET_NAMES: tuple[str, ...] = (
    "mnist5k",
    "digits",
    "mnist",
    "fashion_mnist",
    "synthetic_teacher",
    "synthetic_blobs",
)

DEFAULT_DATASET: str = "mnist5k"

#: Environment variable naming the folder that holds downloaded data sets.
DATA_DIR_ENV: str = "GRADIENTFLOW_DATA"


def default_data_dir() -> Path:
    """Return the folder for data files: ``$GRADIENTFLOW_DATA`` if set, else ``~/.cache/gradientflow/data``."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "gradientflow" / "data"


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    seed: int = 0,
    download: bool = False,
    **options: Any,
) -> Dataset:
    """Return the data set `name` (one of `DATASET_NAMES`) in memory, split into train and test.

    - ``mnist5k`` (default, offline) and ``digits``: a fixed split, the same whatever `seed`.
    - ``mnist``, ``fashion_mnist``: IDX files under `data_dir` (default `default_data_dir()`) or
      system folders; ``download=True`` fetches missing files, verified by SHA-256.
    - ``synthetic_blobs``, ``synthetic_teacher``: generated from `seed`; `options` set their
      sizes (``n_train``, ``n_test``, ``n_features``, ``num_classes``, ...).

    Inputs are float32 (images scaled to [0, 1]); labels int64. Raises DataError for an unknown
    name or option, or a data set that is missing or corrupted. Example::

        data = load_dataset("synthetic_blobs", seed=3, n_train=500, spread=1.0)
        data.train_x.shape  # torch.Size([500, 64])
    """
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    if name == "synthetic_blobs":
        return make_blobs(seed, options)
    if name == "synthetic_teacher":
        return make_teacher(seed, options)
    check_options(name, options, {})  # the file-backed sets take no options
    if name == "mnist5k":
        return load_mnist5k()
    if name == "digits":
        return load_digits()
    folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return load_idx_set(name, folder, download=download)
