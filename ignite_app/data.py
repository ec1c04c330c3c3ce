"""Datasets and loaders: what the engines iterate over.

The training order is a pure function of ``(seed, epoch, rank)``: :class:`EpochBatchSampler` draws a fresh
permutation for every epoch and can start part-way through one, so a run resumed from a mid-epoch checkpoint sees
exactly the batches the uninterrupted run would have seen, without pushing the skipped ones through the model.
Validation is sharded without padding (:class:`ShardSampler`), so a confusion matrix reduced over processes counts
every validation image exactly once.

Random augmentation follows the same rule: for a dataset that augments (``takes_sample_seeds``), the sampler hands
out :class:`SampleKey` ``(index, seed)`` pairs whose seed is a pure function of ``(seed, epoch, pass, index)``, and
the dataset derives its crop and flip from that seed alone. Which worker process loads a sample, how many there
are, and whether the run was resumed in between therefore change nothing.
"""

from __future__ import annotations

import importlib.util
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ignite_app.config import TrainConfig
from ignite_app.errors import UsageError

T = TypeVar("T")

# Splits are fixed, whatever --seed says, so that runs with different seeds are validated on the same images.
SPLIT_SEED = 0
DIGITS_VAL_FRACTION = 0.2
SYNTHETIC_SIZES = (10_000, 2_000)  # train, val
SYNTHETIC_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class DataBundle:
    """The datasets of a run and what the model and the checkpoints need to know about them."""

    train: Dataset
    val: Dataset
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, computed on the training set
    std: tuple[float, ...]
    skipped: tuple[str, ...] = ()  # "path: reason" of each image left out by --on-bad-image skip


class SampleKey(NamedTuple):
    """What :class:`EpochBatchSampler` yields per sample for a dataset that augments: its index and its seed."""

    index: int
    seed: int


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


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``images`` (N, C, H, W); a constant channel gets std 1."""
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3))
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


Normalization = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) per channel


def _normalised_bundle(x_train: Tensor, y_train: Tensor, x_val: Tensor, y_val: Tensor, classes: Sequence[str],
                       normalization: Normalization | None = None) -> DataBundle:
    # training statistics only: validation must not leak into them; a checkpoint's constants win over both
    mean, std = normalization if normalization is not None else channel_stats(x_train)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return DataBundle(
        train=TensorImageDataset((x_train - m) / s, y_train),
        val=TensorImageDataset((x_val - m) / s, y_val),
        classes=tuple(classes),
        input_shape=tuple(x_train.shape[1:]),  # type: ignore[arg-type]
        mean=mean,
        std=std,
    )


def load_digits_data(normalization: Normalization | None = None) -> DataBundle:
    """scikit-learn's 1,797 real 8x8 handwritten digits, split 80/20 per class with a fixed split seed.

    The images are read from the CSV file that ships inside scikit-learn, without importing scikit-learn (that
    alone takes longer than reading the data).

    Args:
        normalization: ``(mean, std)`` to use instead of the training split's (a checkpoint's constants).
    """
    table = np.loadtxt(_digits_file(), delimiter=",", dtype=np.float32)  # (1797, 65): 64 pixels, then the digit
    images, labels = table[:, :-1], table[:, -1].astype(np.int64)
    by_class = {str(d): np.flatnonzero(labels == d).tolist() for d in range(10)}
    train, val = stratified_split(by_class, DIGITS_VAL_FRACTION)
    train_idx, val_idx = sorted(sum(train.values(), [])), sorted(sum(val.values(), []))

    def to_tensors(idx: list[int]) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(images[idx]).view(-1, 1, 8, 8), torch.from_numpy(labels[idx])

    return _normalised_bundle(*to_tensors(train_idx), *to_tensors(val_idx),
                              classes=[str(d) for d in range(10)], normalization=normalization)


def _digits_file() -> Path:
    spec = importlib.util.find_spec("sklearn")  # locates the package without running its (slow) __init__
    if spec is None or spec.origin is None:
        raise UsageError("--dataset digits reads its images from scikit-learn, which is not installed; "
                         "pip install scikit-learn")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def stratified_split(groups: Mapping[str, Sequence[T]], fraction: float,
                     seed: int = SPLIT_SEED) -> tuple[dict[str, list[T]], dict[str, list[T]]]:
    """Hold out ``round(fraction * n)`` of each class's ``n`` items for validation, chosen at random.

    A class of two or more items keeps at least one on each side; a class of a single item trains only. Each
    class is shuffled by its own generator (seeded from ``seed`` and the class name), so adding a class or
    items to one class leaves the split of the others as it was.
    """
    train: dict[str, list[T]] = {}
    val: dict[str, list[T]] = {}
    for name, items in groups.items():
        n = len(items)
        n_val = min(n - 1, max(1, round(fraction * n))) if n > 1 else 0
        order = torch.randperm(n, generator=seeded_generator(seed, zlib.crc32(name.encode("utf-8")))).tolist()
        held_out = set(order[:n_val])
        val[name] = [p for i, p in enumerate(items) if i in held_out]
        train[name] = [p for i, p in enumerate(items) if i not in held_out]
    return train, val


def load_synthetic_data(num_classes: int = 10, seed: int = 0,
                        normalization: Normalization | None = None) -> DataBundle:
    """Random 3x32x32 images: a fixed noisy pattern per class plus noise. Learnable, for speed tests."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, *SYNTHETIC_SHAPE, generator=g)

    def sample(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(num_classes, (n,), generator=g)
        return patterns[y] + 2.0 * torch.randn(n, *SYNTHETIC_SHAPE, generator=g), y

    return _normalised_bundle(*sample(SYNTHETIC_SIZES[0]), *sample(SYNTHETIC_SIZES[1]),
                              classes=[f"class_{i}" for i in range(num_classes)], normalization=normalization)


def build_data(config: TrainConfig) -> DataBundle:
    """The datasets named by ``config.dataset``.

    Raises:
        DataError: (folder datasets) the data cannot be used as it is; the message names the path and the fix.
    """
    if config.dataset == "digits":
        return load_digits_data()
    if config.dataset == "synthetic":
        return load_synthetic_data()
    if config.dataset == "folder":
        from ignite_app.folder import build_folder_data  # late: folder imports this module

        return build_folder_data(config)
    raise ValueError(f"unknown dataset {config.dataset!r}; available: digits, synthetic, folder")


def epoch_permutation(size: int, seed: int, epoch: int, repeat: int = 0) -> Tensor:
    """The shuffled order of pass ``repeat`` of ``epoch``: a pure function of its arguments."""
    return torch.randperm(size, generator=seeded_generator(seed, epoch, repeat))


def sample_seeds(size: int, seed: int, epoch: int, repeat: int = 0) -> Tensor:
    """One augmentation seed per sample for pass ``repeat`` of ``epoch``: a pure function of its arguments."""
    # A stream of its own (the trailing 1): the seeds are unrelated to the permutation of the same pass.
    return torch.randint(2**62, (size,), generator=seeded_generator(seed, epoch, repeat, 1))


def seeded_generator(*words: int) -> torch.Generator:
    """A torch generator seeded from ``words`` (non-negative ints): a pure function of them."""
    # SeedSequence mixes the words, so (seed=0, epoch=2) and (seed=1, epoch=1) get unrelated streams.
    (state,) = np.random.SeedSequence(list(words)).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state) >> 1)


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled batches of one rank's share of the data, reproducible from ``(seed, epoch)`` and resumable.

    Every epoch yields exactly ``len(self)`` batches (``num_batches``, or one pass over this rank's share), so
    the trainer always starts an epoch with a fresh iterator. Ranks split each permutation round-robin after
    padding it by wrapping around (as ``DistributedSampler`` does), so all ranks take the same number of steps.
    A last batch of a single sample is dropped: batch normalisation cannot train on it.

    Call :meth:`set_epoch` before each epoch; its ``start`` skips that many batches (resume mid-epoch).
    With ``with_seeds`` a batch is a list of :class:`SampleKey` instead of a list of indices.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 num_batches: int | None = None, with_seeds: bool = False) -> None:
        self.size, self.batch_size, self.seed, self.with_seeds = size, batch_size, seed, with_seeds
        self.rank, self.world_size = rank, world_size
        self.per_rank = -(-size // world_size)
        full, rest = divmod(self.per_rank, batch_size)
        self.batches_per_pass = full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)
        if self.batches_per_pass == 0:
            raise ValueError(f"the training set has {size} samples, too few for {world_size} process(es)")
        self.num_batches = num_batches or self.batches_per_pass
        self.epoch, self.start = 1, 0
        self._cache_key: tuple[int, int] | None = None  # the pass whose shard _cache holds
        self._cache: list[Any] = []

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the order of ``epoch`` and skip its first ``start`` batches on the next iteration."""
        self.epoch, self.start = epoch, start % self.num_batches

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[Any]]:  # list[int], or list[SampleKey] with_seeds
        epoch, start = self.epoch, self.start
        self.start = 0  # a skip applies to one iterator only
        for b in range(start, self.num_batches):
            repeat, within = divmod(b, self.batches_per_pass)
            shard = self._shard(epoch, repeat)
            yield shard[within * self.batch_size:(within + 1) * self.batch_size]

    def _shard(self, epoch: int, repeat: int) -> list[Any]:
        key = (epoch, repeat)
        if self._cache_key != key:  # one permutation per pass, not per batch
            order = epoch_permutation(self.size, self.seed, epoch, repeat)
            padded = torch.cat([order, order[: self.per_rank * self.world_size - self.size]])
            shard: list[Any] = padded[self.rank::self.world_size].tolist()
            if self.with_seeds:
                seeds = sample_seeds(self.size, self.seed, epoch, repeat).tolist()
                shard = [SampleKey(i, seeds[i]) for i in shard]
            self._cache_key, self._cache = key, shard
        return self._cache


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` in order: every sample on exactly one rank, no padding."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.rank, self.world_size = size, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world_size))


def _loader_kwargs(dataset: Dataset, num_workers: int, pin_memory: bool, seed: int) -> dict[str, Any]:
    return {
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "pin_memory": pin_memory,
        "collate_fn": getattr(dataset, "collate_fn", None),
        # The loader draws its workers' base seed from this generator, not from the global RNG, so creating an
        # iterator (an evaluation, say) does not shift the dropout masks of the training that follows.
        "generator": torch.Generator().manual_seed(seed),
    }


def build_loaders(data: DataBundle, config: TrainConfig, rank: int = 0, world_size: int = 1,
                  pin_memory: bool = False) -> tuple[DataLoader, DataLoader]:
    """The training loader (an :class:`EpochBatchSampler`) and the validation loader (a :class:`ShardSampler`)."""
    batches = EpochBatchSampler(len(data.train), config.batch_size, config.seed, rank, world_size,
                                num_batches=config.epoch_length,
                                with_seeds=getattr(data.train, "takes_sample_seeds", False))
    train = DataLoader(data.train, batch_sampler=batches,
                       **_loader_kwargs(data.train, config.num_workers, pin_memory, config.seed))
    val = DataLoader(data.val, batch_size=config.batch_size, sampler=ShardSampler(len(data.val), rank, world_size),
                     **_loader_kwargs(data.val, config.num_workers, pin_memory, config.seed))
    return train, val
