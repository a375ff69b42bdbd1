"""The in-memory data set every loader returns, and the fixed stratified split of the bundled sets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradientflow.errors import DataError

__all__ = ["Dataset", "stratified_split", "check_options"]


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == is elementwise, not a bool
class Dataset:
    """A classification data set held in memory as one tensor per split.

    Inputs are float32 and contiguous, of shape ``(n, *input_shape)``; labels are int64 in
    ``[0, num_classes)``, of shape ``(n,)``. The trainer slices batches itself.
    """

    name: str
    train_x: torch.Tensor  # (n_train, *input_shape) float32
    train_y: torch.Tensor  # (n_train,) int64
    test_x: torch.Tensor  # (n_test, *input_shape) float32
    test_y: torch.Tensor  # (n_test,) int64
    num_classes: int
    input_shape: tuple[int, ...]  # (1, 28, 28) for MNIST-like images, (64,) for 64-feature vectors
    source: str  # where it came from: a package, file paths, or a generator and its seed

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if tuple(x.shape[1:]) != tuple(self.input_shape) or x.dtype != torch.float32:
                raise DataError(
                    f"{self.name}: {split}_x has shape {tuple(x.shape)} and dtype {x.dtype},"
                    f" expected (n, {', '.join(map(str, self.input_shape))}) float32"
                )
            if y.shape != (x.shape[0],) or y.dtype != torch.int64:
                raise DataError(
                    f"{self.name}: {split}_y has shape {tuple(y.shape)} and dtype {y.dtype},"
                    f" expected ({x.shape[0]},) int64"
                )

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.train_x.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return int(self.test_x.shape[0])

    @property
    def num_features(self) -> int:
        """Number of input values per example (784 for 28x28 images): the width a flat first layer needs."""
        return int(np.prod(self.input_shape))

    def describe(self) -> str:
        """Return one line such as ``mnist5k: 4000 train / 1000 test, input (1, 28, 28), 10 classes (source)``."""
        return (
            f"{self.name}: {self.n_train} train / {self.n_test} test, input {tuple(self.input_shape)},"
            f" {self.num_classes} classes ({self.source})"
        )


def stratified_split(
    labels: np.ndarray, test_per_class: Mapping[int, int], split_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (train_indices, test_indices) of `labels`, each in a shuffled order.

    Class c gets ``test_per_class[c]`` test examples. The choice depends only on `labels` and
    `split_seed`: it draws from numpy's legacy ``RandomState``, whose stream numpy has frozen
    (NEP 19), so the split is the same on every machine and numpy version.
    """
    rng = np.random.RandomState(split_seed)
    train_parts, test_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = test_per_class[int(label)]
        test_parts.append(members[:count])
        train_parts.append(members[count:])
    # Shuffled so that the trainer's first batches are not all one class (the raw data is sorted).
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return train, test


def check_options(dataset: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Return `defaults` updated with `options`; raise DataError naming any option not in `defaults`."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) if defaults else "none"
        raise DataError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
            f" for dataset {dataset!r}; allowed options: {allowed}"
        )
    return {**defaults, **options}
