"""The order of the data: seeded, resumable training batches and exact validation shards.

The training order is a pure function of ``(seed, epoch, rank)``: :class:`EpochBatchSampler` draws a fresh
permutation for every epoch (:class:`BalancedBatchSampler`: classes drawn equally, with replacement) and can start
part-way through one, so a run resumed from a mid-epoch checkpoint sees
exactly the batches the uninterrupted run would have seen, without pushing the skipped ones through the model.
Validation is sharded without padding (:class:`ShardSampler`), so a confusion matrix reduced over processes counts
every validation image exactly once.

Random augmentation follows the same rule: for a dataset that augments (``takes_sample_seeds``), the sampler hands
out :class:`SampleKey` ``(index, seed)`` pairs whose seed is a pure function of ``(seed, epoch, pass, index)``, and
the dataset derives its crop and flip from that seed alone. Which worker process loads a sample, how many there
are, and whether the run was resumed in between therefore change nothing.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

T = TypeVar("T")

# Splits are fixed, whatever --seed says, so that runs with different seeds are validated on the same images.
SPLIT_SEED = 0


class SampleKey(NamedTuple):
    """What :class:`EpochBatchSampler` yields per sample for a dataset that augments: its index and its seed."""

    index: int
    seed: int


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
            order, seeds = self._draw(epoch, repeat)
            pad = self.per_rank * self.world_size - self.size
            shard: list[Any] = torch.cat([order, order[:pad]])[self.rank::self.world_size].tolist()
            if seeds is not None:
                shard_seeds = torch.cat([seeds, seeds[:pad]])[self.rank::self.world_size].tolist()
                shard = [SampleKey(i, s) for i, s in zip(shard, shard_seeds)]
            self._cache_key, self._cache = key, shard
        return self._cache

    def _draw(self, epoch: int, repeat: int) -> tuple[Tensor, Tensor | None]:
        """The pass's order of sample indices, and (``with_seeds``) the augmentation seed of each position in it."""
        order = epoch_permutation(self.size, self.seed, epoch, repeat)
        # one seed per sample index (each index appears once in a permutation)
        return order, sample_seeds(self.size, self.seed, epoch, repeat)[order] if self.with_seeds else None


class BalancedBatchSampler(EpochBatchSampler):
    """:class:`EpochBatchSampler` drawing the classes equally (``--sampler balanced``), with replacement.

    Each pass has as many positions as the training set. Every class with samples gets ``size // C`` of them (the
    ``size % C`` left over go to classes chosen at random), the positions are shuffled, and each position takes a
    sample of its class uniformly at random: a rare class's images repeat, a common class's are partly left out.
    All of it is a pure function of ``(seed, epoch, pass)``, so the ranks' shards, the sample seeds, padding and a
    mid-epoch resume work as in :class:`EpochBatchSampler`. A duplicated image gets its own seed at each position.

    Args:
        labels: the class of each training sample, (size,) integers.
        num_classes: the number of classes (a class without samples is never drawn).
    """

    def __init__(self, labels: Sequence[int] | Tensor, num_classes: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, num_batches: int | None = None, with_seeds: bool = False) -> None:
        labels = torch.as_tensor(labels, dtype=torch.int64)
        super().__init__(len(labels), batch_size, seed, rank, world_size, num_batches, with_seeds)
        counts = torch.bincount(labels, minlength=num_classes)
        self.classes = torch.nonzero(counts).flatten()  # (C',) the classes that have samples
        self.by_class = torch.argsort(labels, stable=True)  # sample indices grouped by class, in index order
        self.first = torch.cumsum(counts, 0) - counts  # where each class starts in by_class
        self.counts = counts

    def _draw(self, epoch: int, repeat: int) -> tuple[Tensor, Tensor | None]:
        # A stream of its own (the trailing 2): unrelated to the shuffled sampler's permutation of the same pass.
        g = seeded_generator(self.seed, epoch, repeat, 2)
        n_classes = len(self.classes)
        per_class = torch.full((n_classes,), self.size // n_classes, dtype=torch.int64)
        per_class[torch.randperm(n_classes, generator=g)[: self.size % n_classes]] += 1
        position_class = torch.repeat_interleave(self.classes, per_class)[torch.randperm(self.size, generator=g)]
        pick = (torch.rand(self.size, generator=g, dtype=torch.float64) * self.counts[position_class]).long()
        order = self.by_class[self.first[position_class] + pick]  # (size,) a sample of each position's class
        return order, sample_seeds(self.size, self.seed, epoch, repeat) if self.with_seeds else None


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` in order: every sample on exactly one rank, no padding."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.rank, self.world_size = size, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world_size))
