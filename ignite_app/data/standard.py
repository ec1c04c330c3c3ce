"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100, read from the files torchvision downloads, as uint8 tensors.

``--data-dir DIR`` holds them exactly as ``torchvision.datasets`` lays them out, so a folder torchvision has
filled already just works::

    DIR/MNIST/raw/train-images-idx3-ubyte        (and train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
    DIR/FashionMNIST/raw/...                       t10k-labels-idx1-ubyte; each may also be the .gz download)
    DIR/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, batches.meta
    DIR/cifar-100-python/train, test, meta

The files are read here, not by torchvision's classes: those check the MD5 sums of the official files and refuse
anything else, such as the tiny copies the tests write. The CIFAR files are pickles; they are read by an unpickler
that builds nothing but the dicts, lists, strings and numpy arrays they hold (a pickle can run any code otherwise).
Only :func:`download` uses torchvision, to fetch the official files.
"""

from __future__ import annotations

import gzip
import importlib
import pickle
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ignite_app.errors import DataError

TRAIN, TEST = "train", "test"
MNIST_FILES = {TRAIN: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               TEST: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CIFAR10_FILES = {TRAIN: tuple(f"data_batch_{i}" for i in range(1, 6)), TEST: ("test_batch",)}
CIFAR100_FILES = {TRAIN: ("train",), TEST: ("test",)}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")  # torchvision's FashionMNIST.classes; the idx files name no classes
_IDX_UBYTE = 0x08  # the idx type code of unsigned bytes


@dataclass(frozen=True)
class StandardSpec:
    """Where a standard dataset lives under ``--data-dir`` and how it is augmented."""

    title: str  # as people write it
    folder: str  # under --data-dir, as torchvision names it
    files: dict[str, tuple[str, ...]]  # per split
    meta: str | None  # the file with the class names (CIFAR)
    shape: tuple[int, int, int]  # (C, H, W)
    padding: int  # --augment: random crop of the image padded by this many pixels...
    flip: bool  # ...and a horizontal flip or not
    download_mb: int


SPECS = {
    "mnist": StandardSpec("MNIST", "MNIST/raw", MNIST_FILES, None, (1, 28, 28), 2, False, 12),
    "fashion-mnist": StandardSpec("Fashion-MNIST", "FashionMNIST/raw", MNIST_FILES, None, (1, 28, 28), 2, False, 30),
    "cifar10": StandardSpec("CIFAR-10", "cifar-10-batches-py", CIFAR10_FILES, "batches.meta", (3, 32, 32), 4, True,
                            163),
    "cifar100": StandardSpec("CIFAR-100", "cifar-100-python", CIFAR100_FILES, "meta", (3, 32, 32), 4, True, 161),
}
DATASETS = tuple(SPECS)


@dataclass(frozen=True)
class StandardSplit:
    """One split of a standard dataset: uint8 images (N, C, H, W), int64 labels (N,), the class names."""

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]


def spec(name: str) -> StandardSpec:
    """The :class:`StandardSpec` of ``name``; raises ValueError naming the datasets there are."""
    if name not in SPECS:
        raise ValueError(f"unknown standard dataset {name!r}; available: {', '.join(DATASETS)}")
    return SPECS[name]


def expected_files(name: str, root: str | Path, split: str | None = None) -> list[Path]:
    """The files :func:`load_standard` reads for ``split`` of ``name`` under ``root`` (None: both splits), with
    the meta file; an idx file may also be present as its ``.gz`` download only."""
    s = spec(name)
    folder = Path(root) / s.folder
    splits = (TRAIN, TEST) if split is None else (split,)
    names = [n for sp in splits for n in s.files[sp]] + ([s.meta] if s.meta else [])
    return [folder / n for n in names]


def load_standard(name: str, root: str | Path, split: str = TRAIN) -> StandardSplit:
    """The ``split`` (``"train"`` or ``"test"``) of standard dataset ``name`` from ``root`` (``--data-dir``).

    Raises:
        DataError: a file is missing (the message names the folder, the files expected and ``--download``), or
            is not in the format torchvision downloads (truncated, another file renamed...).
        ValueError: an unknown ``name`` or ``split``.
    """
    s = spec(name)
    if split not in (TRAIN, TEST):
        raise ValueError(f"split must be {TRAIN!r} or {TEST!r}, got {split!r}")
    _check_present(name, Path(root), split)
    folder = Path(root) / s.folder
    if s.meta is None:
        images, labels = _read_mnist(folder, s.files[split])
        classes = FASHION_CLASSES if name == "fashion-mnist" else tuple(str(d) for d in range(10))
    else:
        images, labels = _read_cifar(folder, s.files[split], "fine_labels" if name == "cifar100" else "labels")
        classes = _read_cifar_classes(folder / s.meta, "fine_label_names" if name == "cifar100" else "label_names")
    bad = labels[(labels < 0) | (labels >= len(classes))]
    if len(bad):
        raise DataError(f"{folder}: label {int(bad[0])} is not a class of {s.title} ({len(classes)} classes); the "
                        f"files are not the official ones: delete {folder} and pass --download")
    return StandardSplit(torch.from_numpy(images), torch.from_numpy(labels), classes)


def download(name: str, root: str | Path) -> None:
    """Fetch both splits of ``name`` into ``root`` through ``torchvision.datasets`` (MD5-checked by it).

    Raises:
        DataError: the download failed (no network, a server error); the message says how to fetch it by hand.
    """
    import torchvision.datasets as tvd  # late: only --download needs it

    s = spec(name)
    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}
    try:
        for train in (True, False):
            cls[name](str(root), train=train, download=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; torchvision raises RuntimeError on bad files
        raise DataError(f"--download {name}: fetching {s.title} (~{s.download_mb} MB) into {root} failed ({e}); "
                        "check the network and try again, or copy the files torchvision downloads into "
                        f"{Path(root) / s.folder}") from None


def missing_files(name: str, root: str | Path, split: str | None = None) -> list[Path]:
    """The files of :func:`expected_files` that are neither there nor there as their ``.gz`` download."""
    return [p for p in expected_files(name, root, split) if not p.is_file() and not _gz(p).is_file()]


def _check_present(name: str, root: Path, split: str) -> None:
    missing = missing_files(name, root, split)
    if missing:
        s = spec(name)
        listed = ", ".join(p.name for p in missing)
        raise DataError(f"--dataset {name}: {s.title} is not in {root / s.folder} (missing: {listed}); pass "
                        f"--download to fetch it (~{s.download_mb} MB) into {root}, or --data-dir to the folder "
                        f"that holds {s.folder}/")


def _gz(path: Path) -> Path:
    return path.with_name(path.name + ".gz")


def _read_bytes(path: Path) -> bytes:
    """The file, or its .gz sibling decompressed (torchvision keeps both; either will do)."""
    if path.is_file():
        return path.read_bytes()
    try:
        with gzip.open(_gz(path)) as f:
            return f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{_gz(path)} cannot be decompressed ({e}); delete it and pass --download") from None


def read_idx(path: Path) -> np.ndarray:
    """An idx file of unsigned bytes (MNIST's format: 0, 0, type 0x08, dimensions, sizes big-endian, data).

    Raises:
        DataError: the file is not an idx file of bytes, or is shorter or longer than its header says.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[:3] != bytes((0, 0, _IDX_UBYTE)) or raw[3] == 0:
        raise DataError(f"{path} is not an idx file of unsigned bytes (it starts {raw[:4].hex()}, expected "
                        "0000 08 and a dimension count); delete it and pass --download")
    ndim, start = raw[3], 4 + 4 * raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:start]) if len(raw) >= start else ()
    if len(raw) < start or len(raw) != start + int(np.prod(dims, dtype=np.int64)):
        raise DataError(f"{path} holds {len(raw)} bytes where its header promises {ndim} dimensions of sizes "
                        f"{dims}: it is truncated or damaged; delete it and pass --download")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def _read_mnist(folder: Path, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(folder / names[0]), read_idx(folder / names[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: {names[0]} holds images of shape {images.shape} and {names[1]} labels of "
                        f"shape {labels.shape}; expected (N, H, W) and (N,): delete the folder and pass --download")
    return images[:, None].copy(), labels.astype(np.int64)  # (N, 1, H, W); copy: frombuffer is read-only


def _read_cifar(folder: Path, names: Sequence[str], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in names:
        batch = _read_pickle(folder / name, ("data", label_key))
        data = np.asarray(batch["data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 \
                or len(batch[label_key]) != len(data):
            raise DataError(f"{folder / name}: 'data' is {data.dtype} {data.shape} with {len(batch[label_key])} "
                            f"labels; expected uint8 (N, 3072) and N labels: delete it and pass --download")
        images.append(data.reshape(-1, 3, 32, 32))  # the official rows: 1024 red, 1024 green, 1024 blue values
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _read_cifar_classes(path: Path, key: str) -> tuple[str, ...]:
    names = _read_pickle(path, (key,))[key]
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _read_pickle(path: Path, keys: Sequence[str]) -> dict[str, Any]:
    """A CIFAR pickle: a dict holding at least ``keys``, read without building anything but plain data."""
    try:
        with open(path, "rb") as f:
            loaded = _PlainDataUnpickler(f, encoding="latin1").load()  # latin1: the files come from Python 2
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path} cannot be read as a CIFAR batch ({type(e).__name__}: {e}); delete it and pass "
                        "--download") from None
    if not isinstance(loaded, dict) or any(k not in loaded for k in keys):
        found = sorted(map(str, loaded)) if isinstance(loaded, dict) else type(loaded).__name__
        raise DataError(f"{path} holds {found}, not a dict with {', '.join(keys)}; delete it and pass --download")
    return loaded


def _numpy_reconstruct() -> Any:
    try:
        return importlib.import_module("numpy._core.multiarray")._reconstruct  # numpy 2
    except ImportError:
        return importlib.import_module("numpy.core.multiarray")._reconstruct


class _PlainDataUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays only: a pickle naming any other callable is refused.

    The official files reference ``numpy.core.multiarray._reconstruct`` (numpy 2 calls the module
    ``numpy._core``), ``numpy.ndarray`` and ``numpy.dtype``; pickles written by Python 3 with protocol 2 also
    reference ``_codecs.encode`` to rebuild bytes.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: importlib.import_module("_codecs").encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never does")
        return self._ALLOWED[(module, name)]()
