"""Data sets held in memory as one tensor per split: the offline default (``mnist5k``), scikit-learn's
digits, MNIST and Fashion-MNIST from IDX files (found on disk or downloaded and verified), and
synthetic sets generated from a seed.

    >>> from gradientflow.data import load_dataset
    >>> data = load_dataset("mnist5k")
    >>> data.train_x.shape, data.test_x.shape
    (torch.Size([4000, 1, 28, 28]), torch.Size([1000, 1, 28, 28]))
"""

from gradientflow.data.dataset import Dataset
from gradientflow.data.download import CHECKSUMS, MIRRORS, download_files
from gradientflow.data.idx import read_idx, write_idx
from gradientflow.data.idx_sets import SYSTEM_SEARCH_PATHS
from gradientflow.data.loader import DATA_DIR_ENV, DATASET_NAMES, DEFAULT_DATASET, default_data_dir, load_dataset

__all__ = [
    "Dataset",
    "DATASET_NAMES",
    "DEFAULT_DATASET",
    "DATA_DIR_ENV",
    "load_dataset",
    "default_data_dir",
    "read_idx",
    "write_idx",
    "download_files",
    "MIRRORS",
    "CHECKSUMS",
    "SYSTEM_SEARCH_PATHS",
]
