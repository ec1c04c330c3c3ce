"""Test helpers: tiny copies of MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 in the exact formats torchvision
downloads (idx files with their magic numbers, optionally gzipped; CIFAR's Python-2 pickles with their real keys)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) as an idx file: 0, 0, 0x08 (unsigned byte), ndim, sizes as big-endian uint32, data."""
    assert array.dtype == np.uint8
    return bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def write_mnist(root: Path, folder: str = "MNIST/raw", train: int = 30, test: int = 10, gz: bool = False,
                seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``root/<folder>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``; returns ``{split: (images, labels)}``."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", train), ("test", "t10k", test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(root / folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
        out[split] = (images, labels)
    return out


class Python2Array:
    """Pickles ``array`` as Python 2's numpy did in the official files: its bytes as a (Python 2) str, which
    Python 3 reads back with ``encoding="latin1"`` as a str that numpy turns back into bytes."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __reduce__(self) -> tuple:
        reconstruct, (cls, empty, typecode), state = self.array.__reduce__()
        version, shape, dtype, fortran, data = state
        return reconstruct, (cls, empty, typecode.decode("latin1")), (version, shape, dtype, fortran,
                                                                      data.decode("latin1"))


def python2_pickle(obj: object) -> bytes:
    """Pickle protocol 2 naming numpy's module as the official files (written by Python 2's numpy) do."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def cifar_batch(n: int, rng: np.random.Generator, label_key: str, classes: int, name: str) -> dict:
    batch = {"batch_label": name, "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             "filenames": [f"img_{i:05d}.png" for i in range(n)], label_key: [int(i % classes) for i in range(n)]}
    if label_key == "fine_labels":
        batch["coarse_labels"] = [int(i % 20) for i in range(n)]
    return batch


def write_cifar10(root: Path, per_batch: int = 6, test: int = 5, seed: int = 0) -> dict[str, list[dict]]:
    """``root/cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta``; returns the batches by split."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train = [cifar_batch(per_batch, rng, "labels", 10, f"training batch {i} of 5") for i in range(1, 6)]
    for i, batch in enumerate(train, 1):  # the data as the official files hold it: Python 2 bytes
        (folder / f"data_batch_{i}").write_bytes(python2_pickle({**batch, "data": Python2Array(batch["data"])}))
    test_batch = cifar_batch(test, rng, "labels", 10, "testing batch 1 of 1")
    (folder / "test_batch").write_bytes(python2_pickle(test_batch))  # as Python 3 pickles bytes: _codecs.encode
    meta = {"label_names": CIFAR10_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(python2_pickle(meta))
    return {"train": train, "test": [test_batch]}


def write_cifar100(root: Path, train: int = 12, test: int = 5, seed: int = 0) -> dict[str, list[dict]]:
    """``root/cifar-100-python/train, test, meta``; returns the batches by split."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {"train": cifar_batch(train, rng, "fine_labels", 100, "training batch 1 of 1"),
               "test": cifar_batch(test, rng, "fine_labels", 100, "testing batch 1 of 1")}
    for split, batch in batches.items():
        (folder / split).write_bytes(python2_pickle({**batch, "data": Python2Array(batch["data"])}))
    meta = {"fine_label_names": [f"fine_{i}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i}" for i in range(20)]}
    (folder / "meta").write_bytes(python2_pickle(meta))
    return {split: [batch] for split, batch in batches.items()}
