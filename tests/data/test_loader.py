"""load_dataset's dispatch and errors, default_data_dir, and the Dataset record's checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gradientflow.data as data_package
from gradientflow.data import DATASET_NAMES, Dataset, default_data_dir, load_dataset
from gradientflow.errors import DataError, GradientflowError


def test_dataset_names_are_the_documented_ones() -> None:
    assert DATASET_NAMES == ("mnist5k", "digits", "mnist", "fashion_mnist", "synthetic_teacher", "synthetic_blobs")
    assert data_package.DEFAULT_DATASET == "mnist5k"


def test_public_api_is_exported() -> None:
    for name in data_package.__all__:
        assert hasattr(data_package, name), name


def test_unknown_dataset_names_it_and_lists_choices() -> None:
    with pytest.raises(DataError) as caught:
        load_dataset("cifar10")
    message = str(caught.value)
    assert "'cifar10'" in message
    for name in DATASET_NAMES:
        assert name in message
    assert isinstance(caught.value, GradientflowError)


@pytest.mark.parametrize("name", ["mnist5k", "digits", "mnist", "fashion_mnist"])
def test_file_backed_sets_reject_options(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"unknown option 'n_train' for dataset '{name}'; allowed options: none"):
        load_dataset(name, data_dir=tmp_path, n_train=10)


def test_default_data_dir_uses_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRADIENTFLOW_DATA", str(tmp_path / "elsewhere"))
    assert default_data_dir() == tmp_path / "elsewhere"


def test_default_data_dir_falls_back_to_home_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GRADIENTFLOW_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".cache" / "gradientflow" / "data"


def test_environment_data_dir_is_searched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_idx_set) -> None:
    make_idx_set(tmp_path / "mnist", n_train=12, n_test=4)
    monkeypatch.setenv("GRADIENTFLOW_DATA", str(tmp_path))
    assert load_dataset("mnist").n_train == 12


def _tensors(n: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(n, *shape), torch.zeros(n, dtype=torch.int64)


def test_dataset_rejects_inconsistent_tensors() -> None:
    x, y = _tensors(4, (3,))
    with pytest.raises(DataError, match=r"bad: test_x has shape \(4, 2\)"):
        Dataset("bad", x, y, torch.zeros(4, 2), y, 2, (3,), "test")
    with pytest.raises(DataError, match=r"bad: train_y has shape \(3,\) and dtype torch.int64, expected \(4,\)"):
        Dataset("bad", x, y[:3], x, y, 2, (3,), "test")
    with pytest.raises(DataError, match="dtype torch.int32"):
        Dataset("bad", x, y.int(), x, y, 2, (3,), "test")


def test_dataset_is_frozen() -> None:
    x, y = _tensors(2, (3,))
    data = Dataset("ok", x, y, x, y, 2, (3,), "test")
    with pytest.raises(AttributeError):
        data.name = "other"  # type: ignore[misc]
