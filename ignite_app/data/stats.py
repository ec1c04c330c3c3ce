"""The training set's per-channel mean and std, from a seeded sample of its images: one rule for every dataset that
does not give its own constants.

A sample of at most :data:`DEFAULT_STATS_IMAGES` training images (the validation view of each, so every image
weighs the same and the statistics are those of what the model sees) stands in for the whole set: start-up no
longer decodes every image. The sums are Python integers (uint8 images), so the constants depend neither on the
order the images are read in, nor on the number of worker processes or training processes, nor on the machine.
With several training processes each one decodes its share of the sample and the sums are gathered, so every
process gets the same constants in 1/N of the time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ignite_app.data.decode import UnreadableImage

DEFAULT_STATS_IMAGES = 2000  # a few thousand images at most, however large the training set
# Below this many images per process the sample is decoded in the process itself: starting worker processes would
# cost more than they save. The result is the same either way.
WORKERS_FROM = 256


@dataclass
class PixelStats:
    """Exact per-channel sums of uint8 pixel values, turned into the mean and std of the images on [0, 1]."""

    channels: int
    count: int = 0  # pixels per channel
    sums: list[Any] = field(default_factory=list)
    squares: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sums = self.sums or [0] * self.channels
        self.squares = self.squares or [0] * self.channels

    @staticmethod
    def of(image: Tensor) -> tuple[int, list[Any], list[Any]]:
        """``(pixels per channel, per-channel sums, per-channel sums of squares)`` of a (C, H, W) image, on the
        0..255 scale: exact integers for uint8, float64 for a float image in [0, 1] (a registered dataset's)."""
        if image.dtype == torch.uint8:
            values = image.reshape(image.shape[0], -1).to(torch.int64)  # 255^2 x 2^40 pixels still fits in int64
        else:
            values = image.reshape(image.shape[0], -1).to(torch.float64) * 255
        return values.shape[1], values.sum(dim=1).tolist(), (values * values).sum(dim=1).tolist()

    def add(self, count: int, sums: Sequence[Any], squares: Sequence[Any]) -> None:
        """Add one image's :meth:`of` values."""
        self.count += count
        self.sums = [a + b for a, b in zip(self.sums, sums)]
        self.squares = [a + b for a, b in zip(self.squares, squares)]

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and (sample) standard deviation on the [0, 1] scale; a constant channel gets std 1."""
        n = self.count
        if n < 2:
            raise ValueError(f"the mean and std need at least 2 pixels per channel, got {n}")
        mean = tuple(s / n / 255 for s in self.sums)
        # n*Q - S^2 in Python integers: exact, so no cancellation error even for millions of pixels
        variance = [(n * q - s * s) / (n * (n - 1)) for s, q in zip(self.sums, self.squares)]
        std = tuple(math.sqrt(v) / 255 if v > 0 else 1.0 for v in variance)
        return mean, std


@dataclass(frozen=True)
class StatsSample:
    """The pixel sums of a sample of the training images, how many were summed, and those that failed."""

    stats: PixelStats
    images: int
    unreadable: tuple[UnreadableImage, ...]


class _StatsProbe(Dataset):
    """Item k: the pixel sums of image ``indices[k]`` of ``dataset``, or the reason it cannot be read."""

    def __init__(self, dataset: Dataset, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, tuple | None, tuple[str, str] | None]:
        index = int(self.indices[k])
        try:
            return index, PixelStats.of(self.dataset[index][0]), None
        except UnreadableImage as e:  # returned, not raised: a worker's exception loses its fields
            return index, None, (e.path, e.reason)


def sample_indices(size: int, max_images: int = DEFAULT_STATS_IMAGES, seed: int = 0) -> np.ndarray:
    """The sorted indices of the ``min(max_images, size)`` images the mean and std are computed from."""
    return np.sort(np.random.default_rng(seed).choice(size, size=min(max_images, size), replace=False))


def sample_pixel_stats(dataset: Dataset, channels: int, max_images: int = DEFAULT_STATS_IMAGES, seed: int = 0,
                       num_workers: int = 0) -> StatsSample:
    """The pixel sums of ``min(max_images, len(dataset))`` images of ``dataset`` chosen by ``seed``.

    With several processes (``ignite.distributed``), each sums its share of the sample and the results are
    gathered: every process returns the same sample.

    Args:
        dataset: the training images under the validation transform (every image counts the same number of
            pixels, and the statistics are those of what the model sees), e.g. ``ImageDataset(table, loader,
            EvalTransform(size))``; items ``(image (C, H, W), label)``, uint8 or float in [0, 1].
        channels: the images' channels.
        max_images: the sample size.
        seed: chooses the sample; the same seed gives the same images (and so the same constants) on every rank.
        num_workers: decoding processes (0: this process; also when this process's share is small).
    """
    indices = sample_indices(len(dataset), max_images, seed)  # type: ignore[arg-type]
    rank, world = idist.get_rank(), idist.get_world_size()
    mine = indices[rank::world]
    loader = DataLoader(_StatsProbe(dataset, mine), batch_size=32, collate_fn=list,  # list: keep images apart
                        num_workers=num_workers if len(mine) >= WORKERS_FROM else 0)
    results = [item for batch in loader for item in batch]
    if world > 1:
        results = [item for part in idist.all_gather(results) for item in part]
    results.sort(key=lambda item: item[0])  # file order: results depend on neither workers nor processes
    stats, bad = PixelStats(channels), []
    for _, sums, failure in results:
        if failure is not None:
            bad.append(UnreadableImage(*failure))
        else:
            stats.add(*sums)
    return StatsSample(stats, len(indices) - len(bad), tuple(bad))
