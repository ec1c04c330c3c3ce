"""The built-in datasets held in memory: scikit-learn's handwritten digits, random synthetic images, and the standard
datasets (MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100, read by :mod:`ignite_app.data.standard`).

All give uint8 images (0..255), like every dataset: the model's preprocessing converts and normalises them.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ignite_app.config import TrainConfig
from ignite_app.data.pipeline import ArrayDataset
from ignite_app.data.samplers import stratified_split
from ignite_app.data.spec import DataBundle, channel_stats
from ignite_app.data.policies import sample_policy
from ignite_app.data.standard import TEST, TRAIN, download, load_standard, missing_files, spec
from ignite_app.data.transforms import PaddedCropTransform, SeededTransform
from ignite_app.errors import UsageError
from ignite_app.runstate.fingerprint import tensor_fingerprint

log = logging.getLogger("ignite_app")

DIGITS_VAL_FRACTION = 0.2
SYNTHETIC_SIZES = (10_000, 2_000)  # train, val
SYNTHETIC_SHAPE = (3, 32, 32)


class TensorImageDataset(Dataset):
    """Images and labels held in memory as tensors; a whole batch is fetched with one indexing operation."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"expected images (N, C, H, W) and labels (N,), got {tuple(images.shape)} "
                             f"and {tuple(labels.shape)}")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        # One gather per batch instead of B __getitem__ calls and a stack: ~3x less loader time on digits.
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx], self.labels[idx]

    @staticmethod
    def collate_fn(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """``__getitems__`` already returns a collated batch."""
        return batch


def tensor_bundle(x_train: Tensor, y_train: Tensor, x_val: Tensor, y_val: Tensor,
                  classes: Sequence[str]) -> DataBundle:
    """A :class:`DataBundle` of uint8 image tensors, with the training split's constants and the data's digest."""
    mean, std = channel_stats(x_train.float() / 255)  # training statistics only: validation must not leak in
    return DataBundle(
        train=TensorImageDataset(x_train, y_train),
        val=TensorImageDataset(x_val, y_val),
        classes=tuple(classes),
        input_shape=tuple(x_train.shape[1:]),  # type: ignore[arg-type]
        mean=mean,
        std=std,
        fingerprint=tensor_fingerprint(x_train, y_train, x_val, y_val),
    )


def load_digits_data() -> DataBundle:
    """scikit-learn's 1,797 real 8x8 handwritten digits, split 80/20 per class with a fixed split seed.

    The images are read from the CSV file that ships inside scikit-learn, without importing scikit-learn (that
    alone takes longer than reading the data). Their 0..16 ink levels are scaled to 0..255.
    """
    table = np.loadtxt(_digits_file(), delimiter=",", dtype=np.float32)  # (1797, 65): 64 pixels, then the digit
    images = np.rint(table[:, :-1] * (255 / 16)).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    train_idx, val_idx = stratified_indices(labels, DIGITS_VAL_FRACTION)

    def to_tensors(idx: list[int]) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(images[idx]).view(-1, 1, 8, 8), torch.from_numpy(labels[idx])

    return tensor_bundle(*to_tensors(train_idx), *to_tensors(val_idx), classes=[str(d) for d in range(10)])


def stratified_indices(labels: np.ndarray, fraction: float) -> tuple[list[int], list[int]]:
    """The sorted training and validation indices of a :func:`~ignite_app.data.samplers.stratified_split` of the
    samples by ``labels`` (the same split for every ``--seed``)."""
    by_class = {str(c): np.flatnonzero(labels == c).tolist() for c in np.unique(labels).tolist()}
    train, val = stratified_split(by_class, fraction)
    return sorted(i for part in train.values() for i in part), sorted(i for part in val.values() for i in part)


def _digits_file() -> Path:
    spec = importlib.util.find_spec("sklearn")  # locates the package without running its (slow) __init__
    if spec is None or spec.origin is None:
        raise UsageError("--dataset digits reads its images from scikit-learn, which is not installed; "
                         "pip install scikit-learn")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def load_synthetic_data(num_classes: int = 10, seed: int = 0) -> DataBundle:
    """Random 3x32x32 uint8 images: a fixed noisy pattern per class plus noise. Learnable, for speed tests."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, *SYNTHETIC_SHAPE, generator=g)

    def sample(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(num_classes, (n,), generator=g)
        x = patterns[y] + 2.0 * torch.randn(n, *SYNTHETIC_SHAPE, generator=g)  # ~N(0, 2.2) per pixel
        return (x * 32 + 128).round().clamp(0, 255).to(torch.uint8), y

    return tensor_bundle(*sample(SYNTHETIC_SIZES[0]), *sample(SYNTHETIC_SIZES[1]),
                         classes=[f"class_{i}" for i in range(num_classes)])


def digits(config: TrainConfig) -> DataBundle:
    """The registered ``digits`` dataset."""
    return load_digits_data()


def synthetic(config: TrainConfig) -> DataBundle:
    """The registered ``synthetic`` dataset."""
    return load_synthetic_data()


def load_standard_data(config: TrainConfig) -> DataBundle:
    """A standard dataset (``--dataset mnist|fashion-mnist|cifar10|cifar100``) from ``--data-dir``: its official
    training set, split by ``--val-split`` (stratified, the same for every ``--seed``) into training and validation
    images; the official test set is left for ``evaluate.py --split test``.

    Raises:
        DataError: the files are missing (without ``--download``), the download failed, or a file is damaged.
    """
    s = spec(config.dataset)
    root = Path(str(config.data_dir))
    fetch_if_missing(config)
    split = load_standard(config.dataset, root, TRAIN)
    train_idx, val_idx = stratified_indices(split.labels.numpy(), float(config.val_split or 0))
    x_train, y_train = split.images[train_idx], split.labels[train_idx]
    x_val, y_val = split.images[val_idx], split.labels[val_idx]
    plain = TensorImageDataset(x_train, y_train)
    policy = sample_policy(config.auto_augment, config.random_erasing)
    if config.augments:
        train = ArrayDataset(x_train, y_train, PaddedCropTransform(s.shape[-1], s.padding, s.flip, policy))
    elif policy is not None:
        train = ArrayDataset(x_train, y_train, SeededTransform([], policy))
    else:
        train = plain
    return DataBundle(train=train, val=TensorImageDataset(x_val, y_val), classes=split.classes,
                      input_shape=s.shape, stats_view=plain,
                      fingerprint=tensor_fingerprint(x_train, y_train, x_val, y_val))


def standard_eval_dataset(config: TrainConfig, which: str) -> tuple[Dataset, tuple[str, ...]]:
    """The images of a standard dataset to evaluate on, and its classes: ``"val"``, the share of the training set a
    run validated on; ``"test"``, the official test set (the figure people compare)."""
    fetch_if_missing(config)
    root = Path(str(config.data_dir))
    if which == TEST:
        split = load_standard(config.dataset, root, TEST)
        return TensorImageDataset(split.images, split.labels), split.classes
    split = load_standard(config.dataset, root, TRAIN)
    _, val_idx = stratified_indices(split.labels.numpy(), float(config.val_split or 0))
    return TensorImageDataset(split.images[val_idx], split.labels[val_idx]), split.classes


def fetch_if_missing(config: TrainConfig) -> None:
    """With ``--download``, fetch the standard dataset when a file is missing (rank 0 fetches, the others wait)."""
    root = Path(str(config.data_dir))
    if not config.download or not missing_files(config.dataset, root):
        return
    if idist.get_rank() == 0:
        log.info("downloading %s into %s (--download)", spec(config.dataset).title, root)
        download(config.dataset, root)
    if idist.get_world_size() > 1:
        idist.barrier()


def mnist(config: TrainConfig) -> DataBundle:
    """The registered ``mnist`` dataset."""
    return load_standard_data(config)


def fashion_mnist(config: TrainConfig) -> DataBundle:
    """The registered ``fashion-mnist`` dataset."""
    return load_standard_data(config)


def cifar10(config: TrainConfig) -> DataBundle:
    """The registered ``cifar10`` dataset."""
    return load_standard_data(config)


def cifar100(config: TrainConfig) -> DataBundle:
    """The registered ``cifar100`` dataset."""
    return load_standard_data(config)
