"""Synthetic classification sets generated from a seed: no files, any size, exactly reproducible.

Every draw comes from a local ``torch.Generator`` seeded with the run's seed, never from the
global RNG, so loading a data set does not change what the model's initialization draws.
Features have (about) unit variance in both generators, so input scale is not a hidden variable
when comparing gradient flow across data sets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from gradientflow.data.dataset import Dataset, check_options
from gradientflow.errors import DataError

__all__ = ["BLOBS_DEFAULTS", "TEACHER_DEFAULTS", "make_blobs", "make_teacher"]

#: Options of synthetic_blobs and their defaults.
BLOBS_DEFAULTS: dict[str, Any] = {
    "n_train": 2000,
    "n_test": 500,
    "n_features": 64,
    "num_classes": 10,
    # Noise std per feature, in units of the centers' std: 2.5 leaves the nearest-center rule
    # about 92% accurate with the other defaults, so the task is learnable but not trivial.
    "spread": 2.5,
}

#: Options of synthetic_teacher and their defaults.
TEACHER_DEFAULTS: dict[str, Any] = {
    "n_train": 2000,
    "n_test": 500,
    "n_features": 64,
    "num_classes": 10,
    "teacher_width": 128,  # hidden units of the teacher: wide enough that its boundaries are curved
}

# Std of the teacher's hidden pre-activations: 2 puts tanh in its nonlinear range, so the labels
# are not a linear function of the inputs.
_TEACHER_GAIN = 2.0


def make_blobs(seed: int, options: Mapping[str, Any]) -> Dataset:
    """Return Gaussian blobs: one center per class, inputs = center + spread * noise, rescaled.

    Centers and noise are standard normal; inputs are divided by sqrt(1 + spread^2) so every
    feature has unit variance in expectation whatever the spread. Classes are balanced (sizes
    differ by at most one). Input shape is ``(n_features,)``.
    """
    config = check_options("synthetic_blobs", options, BLOBS_DEFAULTS)
    n_train, n_test, n_features, num_classes = _sizes("synthetic_blobs", config)
    spread = _positive_float("synthetic_blobs", "spread", config["spread"])
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, n_features, generator=generator)  # (classes, features)
    labels = _balanced_labels(n_train + n_test, num_classes, generator)  # (n,)
    noise = torch.randn(n_train + n_test, n_features, generator=generator)  # (n, features)
    inputs = (centers[labels] + spread * noise) / math.sqrt(1.0 + spread**2)
    source = f"Gaussian blobs generated from seed {seed} (spread {spread:g})"
    return _dataset("synthetic_blobs", inputs, labels, n_train, num_classes, source)


def make_teacher(seed: int, options: Mapping[str, Any]) -> Dataset:
    """Return Gaussian inputs labelled by the argmax of a random two-layer tanh teacher network.

    Inputs are standard normal, ``(n_features,)``. The teacher's logits are standardized per
    class over the generated examples before the argmax, so no class dominates just because its
    output weights happen to be larger; classes are roughly, not exactly, balanced.
    """
    config = check_options("synthetic_teacher", options, TEACHER_DEFAULTS)
    n_train, n_test, n_features, num_classes = _sizes("synthetic_teacher", config)
    width = _positive_int("synthetic_teacher", "teacher_width", config["teacher_width"])
    generator = torch.Generator().manual_seed(seed)
    first = torch.randn(n_features, width, generator=generator) * (_TEACHER_GAIN / math.sqrt(n_features))
    bias = torch.randn(width, generator=generator)
    second = torch.randn(width, num_classes, generator=generator) / math.sqrt(width)
    inputs = torch.randn(n_train + n_test, n_features, generator=generator)  # (n, features)
    logits = torch.tanh(inputs @ first + bias) @ second  # (n, classes)
    logits = (logits - logits.mean(dim=0)) / logits.std(dim=0).clamp_min(1e-12)
    labels = logits.argmax(dim=1)
    source = f"random 2-layer tanh teacher (width {width}) on Gaussian inputs, generated from seed {seed}"
    return _dataset("synthetic_teacher", inputs, labels, n_train, num_classes, source)


def _balanced_labels(count: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Return `count` int64 labels, each class `count // num_classes` or one more times, shuffled."""
    labels = torch.arange(count) % num_classes
    return labels[torch.randperm(count, generator=generator)]


def _dataset(
    name: str, inputs: torch.Tensor, labels: torch.Tensor, n_train: int, num_classes: int, source: str
) -> Dataset:
    """Split generated `inputs` (n, features) and `labels` (n,) into the first n_train and the rest."""
    return Dataset(
        name=name,
        train_x=inputs[:n_train].contiguous(),
        train_y=labels[:n_train].to(torch.int64).contiguous(),
        test_x=inputs[n_train:].contiguous(),
        test_y=labels[n_train:].to(torch.int64).contiguous(),
        num_classes=num_classes,
        input_shape=(int(inputs.shape[1]),),
        source=source,
    )


def _sizes(name: str, config: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """Return (n_train, n_test, n_features, num_classes), each checked."""
    num_classes = _positive_int(name, "num_classes", config["num_classes"])
    if num_classes < 2:
        raise DataError(f"{name}: option num_classes={num_classes!r} must be at least 2")
    return (
        _positive_int(name, "n_train", config["n_train"]),
        _positive_int(name, "n_test", config["n_test"]),
        _positive_int(name, "n_features", config["n_features"]),
        num_classes,
    )


def _positive_int(name: str, option: str, value: Any) -> int:
    """Return `value` if it is an int >= 1 (bool excluded), else raise DataError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{name}: option {option}={value!r} must be a positive integer")
    return value


def _positive_float(name: str, option: str, value: Any) -> float:
    """Return `value` as a float if it is a finite number > 0, else raise DataError naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise DataError(f"{name}: option {option}={value!r} must be a positive finite number")
    return float(value)
