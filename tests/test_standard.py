"""The standard datasets, read from tiny copies written in the formats torchvision downloads, and trained on."""

import pickle
import urllib.error

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from standard_files import (CIFAR10_NAMES, idx_bytes, python2_pickle, write_cifar10, write_cifar100, write_idx,
                            write_mnist)

from ignite_app.app import build
from ignite_app.config import STANDARD_DATASETS, TrainConfig
from ignite_app.data import build_data, standard
from ignite_app.data.pipeline import ArrayDataset
from ignite_app.data.standard import DATASETS, download, expected_files, load_standard, read_idx
from ignite_app.errors import DataError, UsageError
from ignite_app.evaluation import evaluate_saved, evaluation_config, evaluation_data, load_saved_model


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_is_read_as_torchvision_reads_it(tmp_path, gz):
    written = write_mnist(tmp_path, gz=gz)
    for split, train in (("train", True), ("test", False)):
        data = load_standard("mnist", tmp_path, split)
        images, labels = written[split]
        assert data.images.dtype == torch.uint8 and data.images.shape == (len(images), 1, 28, 28)
        assert torch.equal(data.images[:, 0], torch.from_numpy(images))
        assert data.labels.dtype == torch.int64 and data.labels.tolist() == labels.tolist()
        assert data.classes == tuple("0123456789")
        if not gz:  # torchvision's MNIST checks only that the raw files exist: an independent reader to agree with
            reference = tvd.MNIST(str(tmp_path), train=train)
            assert torch.equal(data.images[:, 0], reference.data) and torch.equal(data.labels, reference.targets)


def test_fashion_mnist_has_its_class_names_and_its_own_folder(tmp_path):
    write_mnist(tmp_path, folder="FashionMNIST/raw", seed=1)
    data = load_standard("fashion-mnist", tmp_path)
    assert data.classes == tuple(tvd.FashionMNIST.classes)
    with pytest.raises(DataError, match="MNIST/raw"):
        load_standard("mnist", tmp_path)  # Fashion-MNIST's files are not MNIST's


def test_cifar10_batches_are_concatenated_in_order_with_the_meta_names(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path)
    train = load_standard("cifar10", tmp_path, "train")
    data = np.concatenate([b["data"] for b in written["train"]])
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == torch.uint8
    # the official row layout: 1024 red values, then green, then blue, each row-major
    assert train.images[7, 2, 3, 5] == data[7, 2 * 1024 + 3 * 32 + 5]
    assert train.labels.tolist() == sum((b["labels"] for b in written["train"]), [])
    assert train.classes == tuple(CIFAR10_NAMES)
    test = load_standard("cifar10", tmp_path, "test")
    assert torch.equal(test.images.reshape(5, -1), torch.from_numpy(written["test"][0]["data"]))
    # torchvision's CIFAR10 reads the same pickles once its MD5 checks of the official files are bypassed
    monkeypatch.setattr(tvd.cifar, "check_integrity", lambda path, md5=None: True)
    reference = tvd.CIFAR10(str(tmp_path), train=True)
    assert np.array_equal(train.images.permute(0, 2, 3, 1).numpy(), reference.data)
    assert train.labels.tolist() == reference.targets and list(train.classes) == reference.classes


def test_cifar100_uses_the_fine_labels_and_names(tmp_path):
    written = write_cifar100(tmp_path)
    data = load_standard("cifar100", tmp_path, "train")
    assert data.labels.tolist() == written["train"][0]["fine_labels"]
    assert len(data.classes) == 100 and data.classes[3] == "fine_3"
    assert load_standard("cifar100", tmp_path, "test").images.shape == (5, 3, 32, 32)


@pytest.mark.parametrize("name", DATASETS)
def test_a_missing_dataset_names_the_folder_the_files_and_download(tmp_path, name):
    folder = tmp_path / standard.SPECS[name].folder
    first = expected_files(name, tmp_path, "train")[0].name
    with pytest.raises(DataError, match=rf"is not in {folder} \(missing: {first}.*--download.*--data-dir"):
        load_standard(name, tmp_path)


def test_only_the_missing_files_are_listed(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"\(missing: data_batch_3\)"):
        load_standard("cifar10", tmp_path)
    assert load_standard("cifar10", tmp_path, "test").images.shape[0] == 5  # the test split does not need it


def test_a_truncated_or_foreign_idx_file_is_refused(tmp_path):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((4, 28, 28), dtype=np.uint8))
    assert read_idx(path).shape == (4, 28, 28)
    path.write_bytes(idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))[:-5])
    with pytest.raises(DataError, match=r"x-idx3-ubyte holds 3147 bytes where its header promises 3 dimensions "
                                        r"of sizes \(4, 28, 28\).*--download"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)  # type 0x0d: float32, not MNIST's bytes
    with pytest.raises(DataError, match="not an idx file of unsigned bytes"):
        read_idx(path)


def test_a_corrupt_gzip_download_is_refused(tmp_path):
    write_mnist(tmp_path, gz=True)
    gz = tmp_path / "MNIST/raw/train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz cannot be decompressed"):
        load_standard("mnist", tmp_path)


def test_a_pickle_that_would_run_code_is_refused_before_running_it(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # unpickling would create the file

    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps({"data": Payload()}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2 cannot be read as a CIFAR batch .*io.open, which a CIFAR "
                                        "batch never does"):
        load_standard("cifar10", tmp_path)
    assert not marker.exists()


def test_wrong_contents_are_refused_with_the_fix(tmp_path):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(python2_pickle({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(DataError, match=r"'data' is uint8 \(2, 100\) with 2 labels; expected uint8 \(N, 3072\)"):
        load_standard("cifar10", tmp_path, "test")
    batch.write_bytes(python2_pickle({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}))
    with pytest.raises(DataError, match="label 10 is not a class of CIFAR-10 \\(10 classes\\)"):
        load_standard("cifar10", tmp_path, "test")
    batch.write_bytes(python2_pickle([1, 2]))
    with pytest.raises(DataError, match="holds list, not a dict with data, labels"):
        load_standard("cifar10", tmp_path, "test")


def test_download_fetches_both_splits_through_torchvision_and_explains_a_failure(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tvd, "CIFAR10", lambda root, train, download: calls.append((root, train, download)))
    download("cifar10", tmp_path)
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]

    def offline(root, train, download):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd, "MNIST", offline)
    with pytest.raises(DataError, match=r"--download mnist: fetching MNIST \(~12 MB\) into .* failed \(.*name "
                                        r"resolution.*\); check the network .*/MNIST/raw"):
        download("mnist", tmp_path)


def test_unknown_names_and_splits_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown standard dataset 'svhn'; available: mnist, fashion-mnist, "
                                         "cifar10, cifar100"):
        load_standard("svhn", tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        load_standard("mnist", tmp_path, "val")


def test_the_registered_names_are_the_standard_datasets():
    assert DATASETS == STANDARD_DATASETS  # config.py keeps the names without importing this module


def test_a_standard_dataset_trains_on_a_share_of_its_training_set_and_evaluates_its_test_set(tmp_path):
    write_mnist(tmp_path / "data", train=60, test=20)  # 6 images of each digit
    config = TrainConfig(dataset="mnist", data_dir=tmp_path / "data", epochs=1, batch_size=16, num_workers=0,
                         output_dir=tmp_path / "runs", run_name="r", progress=False)
    app = build(config)
    assert (len(app.data.train), len(app.data.val)) == (50, 10)  # --val-split 0.1 of each class, never the test set
    assert isinstance(app.data.train, ArrayDataset) and app.data.train.takes_sample_seeds  # 2-pixel crop, no flip
    assert app.data.stats_images == 50 and app.data.input_shape == (1, 28, 28)
    app.run()
    log = (tmp_path / "runs" / "r" / "train.log").read_text()
    assert "data: mnist, 50 training and 10 validation images, 10 classes, input 1x28x28" in log
    assert "from a seeded sample of 50 training images" in log
    saved = load_saved_model(tmp_path / "runs" / "r" / "checkpoints" / "best_model.pt")
    for split, images in ((None, 10), ("val", 10), ("test", 20)):  # evaluate.py, and evaluate.py --split test
        dataset, _ = evaluation_data(saved, evaluation_config(saved), split)
        assert evaluate_saved(saved, dataset, batch_size=8).num_samples == images
    with pytest.raises(UsageError, match=r"--split test: only the standard datasets \(mnist, fashion-mnist, cifar10, "
                                         r"cifar100\) have an official test split"):
        evaluation_data(saved, evaluation_config(saved, dataset="digits"), "test")


def test_a_missing_standard_dataset_stops_the_start_or_is_downloaded(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"--dataset cifar10: CIFAR-10 is not in .*cifar-10-batches-py \(missing: "
                                        r"data_batch_1, .*\); pass --download"):
        build_data(TrainConfig(dataset="cifar10", data_dir=tmp_path / "empty"))
    fetched = []

    def fake_download(name, root):  # what torchvision would leave in the folder
        fetched.append(name)
        write_mnist(root, folder="FashionMNIST/raw", train=20, test=10)

    monkeypatch.setattr("ignite_app.data.builtin.download", fake_download)
    data = build_data(TrainConfig(dataset="fashion-mnist", data_dir=tmp_path / "fetched", download=True,
                                  num_workers=0))
    assert fetched == ["fashion-mnist"] and data.classes[0] == "T-shirt/top" and len(data.val) == 10
    build_data(TrainConfig(dataset="fashion-mnist", data_dir=tmp_path / "fetched", download=True, num_workers=0))
    assert fetched == ["fashion-mnist"]  # there already: not fetched again
