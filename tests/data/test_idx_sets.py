"""MNIST and Fashion-MNIST from files on disk: where they are looked for, how they load, what a miss says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gradientflow.data import idx_sets, load_dataset, write_idx
from gradientflow.errors import DataError


@pytest.mark.parametrize("gz", [True, False])
def test_loads_from_data_dir_name_folder(tmp_path: Path, make_idx_set, gz: bool) -> None:
    written = make_idx_set(tmp_path / "mnist", n_train=20, n_test=10, gz=gz)

    data = load_dataset("mnist", data_dir=tmp_path)

    assert data.train_x.shape == (20, 1, 28, 28)
    assert data.test_x.shape == (10, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert data.train_x.is_contiguous()
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    np.testing.assert_allclose(data.train_x[:, 0].numpy(), written.train_images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.test_y.numpy(), written.test_labels)
    assert str(tmp_path / "mnist") in data.source


def test_loads_torchvision_layout(tmp_path: Path, make_idx_set) -> None:
    written = make_idx_set(tmp_path / "FashionMNIST" / "raw", n_train=8, n_test=3)

    data = load_dataset("fashion_mnist", data_dir=tmp_path)

    assert data.name == "fashion_mnist"
    assert data.n_train == 8 and data.n_test == 3
    np.testing.assert_array_equal(data.train_y.numpy(), written.train_labels)


def test_loads_from_system_folder(tmp_path: Path, make_idx_set, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"
    make_idx_set(system, n_train=6, n_test=2)
    monkeypatch.setitem(idx_sets.SYSTEM_SEARCH_PATHS, "fashion_mnist", (tmp_path / "absent", system))

    data = load_dataset("fashion_mnist", data_dir=tmp_path / "cache")

    assert data.n_train == 6
    assert str(system) in data.source


def test_debian_install_location_is_searched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.undo()  # see the real search list, not the empty one the autouse fixture installs
    # Where Debian's dataset-fashion-mnist package puts its files (checked against the .deb's contents).
    debian = Path("/usr/share/datasets/fashion-mnist")
    assert idx_sets.SYSTEM_SEARCH_PATHS["fashion_mnist"][0] == debian
    assert idx_sets.candidate_dirs("fashion_mnist", tmp_path)[:3] == [
        tmp_path / "fashion_mnist",
        tmp_path / "FashionMNIST" / "raw",
        debian,
    ]


def test_data_dir_folder_wins_over_torchvision_layout(tmp_path: Path, make_idx_set) -> None:
    make_idx_set(tmp_path / "mnist", n_train=5, n_test=2)
    make_idx_set(tmp_path / "MNIST" / "raw", n_train=7, n_test=2)
    assert load_dataset("mnist", data_dir=tmp_path).n_train == 5


def test_incomplete_folder_is_skipped(tmp_path: Path, make_idx_set) -> None:
    partial = make_idx_set(tmp_path / "mnist", n_train=5, n_test=2)
    partial.paths["test_labels"].unlink()
    make_idx_set(tmp_path / "MNIST" / "raw", n_train=7, n_test=2)
    assert load_dataset("mnist", data_dir=tmp_path).n_train == 7


def test_missing_dataset_lists_every_folder_and_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = (tmp_path / "sys-a", tmp_path / "sys-b")
    monkeypatch.setitem(idx_sets.SYSTEM_SEARCH_PATHS, "fashion_mnist", system)

    with pytest.raises(DataError) as caught:
        load_dataset("fashion_mnist", data_dir=tmp_path / "cache")

    message = str(caught.value)
    for folder in (tmp_path / "cache" / "fashion_mnist", tmp_path / "cache" / "FashionMNIST" / "raw", *system):
        assert str(folder) in message
    assert "download = true" in message and "[data]" in message and "--download" not in message
    assert "GRADIENTFLOW_DATA" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "train-images-idx3-ubyte" in message


def test_missing_mnist_does_not_suggest_fashion_package(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset("mnist", data_dir=tmp_path)
    assert "apt-get" not in str(caught.value)
    assert "'mnist'" in str(caught.value)


def test_missing_message_says_which_files_a_folder_lacks(tmp_path: Path, make_idx_set) -> None:
    partial = make_idx_set(tmp_path / "mnist")
    partial.paths["train_labels"].unlink()
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)

    with pytest.raises(DataError) as caught:
        load_dataset("mnist", data_dir=tmp_path)

    message = str(caught.value)
    assert f"{tmp_path / 'mnist'} (incomplete, missing train-labels-idx1-ubyte)" in message
    assert f"{tmp_path / 'MNIST' / 'raw'} (none of the files)" in message


def test_images_and_labels_count_mismatch(tmp_path: Path, make_idx_set) -> None:
    written = make_idx_set(tmp_path / "mnist", n_train=20, n_test=10)
    write_idx(written.paths["train_labels"], np.zeros(19, dtype=np.uint8))

    with pytest.raises(DataError, match=r"holds 20 images but .*train-labels-idx1-ubyte.gz holds 19 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_label_out_of_range(tmp_path: Path, make_idx_set) -> None:
    written = make_idx_set(tmp_path / "mnist", n_train=4, n_test=2)
    write_idx(written.paths["test_labels"], np.array([1, 12], dtype=np.uint8))

    with pytest.raises(DataError, match="label 12 is out of range"):
        load_dataset("mnist", data_dir=tmp_path)


def test_images_with_wrong_rank(tmp_path: Path, make_idx_set) -> None:
    written = make_idx_set(tmp_path / "mnist", n_train=4, n_test=2)
    write_idx(written.paths["train_images"], np.zeros((4, 784), dtype=np.uint8))

    with pytest.raises(DataError, match=r"expected \(n, height, width\) uint8 images, got \(4, 784\)"):
        load_dataset("mnist", data_dir=tmp_path)


def test_malformed_file_error_names_it(tmp_path: Path, make_idx_set) -> None:
    written = make_idx_set(tmp_path / "mnist", n_train=4, n_test=2, gz=False)
    path = written.paths["test_images"]
    path.write_bytes(path.read_bytes()[:-1])

    with pytest.raises(DataError, match="malformed IDX file .*t10k-images-idx3-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)


def test_changed_file_is_reread_and_tensors_are_fresh(tmp_path: Path, make_idx_set) -> None:
    make_idx_set(tmp_path / "mnist", n_train=4, n_test=2, seed=1)
    first = load_dataset("mnist", data_dir=tmp_path)
    first.train_x.zero_()
    assert float(load_dataset("mnist", data_dir=tmp_path).train_x.sum()) > 0  # the cache was not touched

    replaced = make_idx_set(tmp_path / "mnist", n_train=6, n_test=2, seed=2)
    second = load_dataset("mnist", data_dir=tmp_path)
    assert second.n_train == 6
    np.testing.assert_array_equal(second.train_y.numpy(), replaced.train_labels)
