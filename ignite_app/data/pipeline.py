"""The image pipeline: files held in flat tables, decoded once to a source image, transformed and collated as uint8.

- **Files**: the samples live in a :class:`FileTable`, flat numpy buffers of path bytes, offsets and labels, so a
  DataLoader worker that reads them touches no per-sample Python object (each touch would copy a page of the
  parent's memory: pytorch#13246).
- **Source image**: :class:`ImageLoader` decodes a file (:func:`~ignite_app.data.decode.decode_image`) and shrinks it
  so that its short side is :func:`~ignite_app.data.transforms.source_short_side` (``ceil(image_size /
  crop_fraction)``: 256 for 224); with ``--cache`` it reads that image from the
  :class:`~ignite_app.data.cache.ImageCache` instead. Training, validation and the cache all start from this image,
  so the cache changes the speed, never a pixel.
- **Items**: :class:`ImageDataset` applies a transform of :mod:`ignite_app.data.transforms` to the source image and
  returns ``(uint8 image, label)``; :class:`ArrayDataset` does the same for images held in memory.
- **Unreadable files met at load time** (``--on-bad-image``): inside a DataLoader worker an exception does not reach
  the main process as itself (it becomes a ``RuntimeError`` holding a traceback), so :class:`ImageDataset` does not
  raise: it returns a :class:`Flagged` item naming the file, and its :meth:`~ImageDataset.collate_fn` makes a
  :class:`Batch` that carries the files out of band. With ``skip``, a training sample is replaced by another one
  chosen from its ``(index, seed)`` (:func:`replacement_key`: the same choice on every rank and on a resume); any
  other unreadable item is left out of its batch. :mod:`ignite_app.data.badimages` decides what happens next.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from ignite_app.data.cache import ImageCache
from ignite_app.data.decode import UnreadableImage, decode_image
from ignite_app.data.transforms import SeededTransform, Transform

MAX_REPLACEMENTS = 100  # unreadable replacements in a row before a training sample is given up (left out)


@dataclass(frozen=True, eq=False)
class FileTable:
    """Image paths and labels in three flat arrays: ``path_bytes[offsets[i]:offsets[i + 1]]`` is file i."""

    path_bytes: np.ndarray  # uint8: the paths, os.fsencode'd and concatenated
    offsets: np.ndarray  # int64 (N + 1,)
    labels: np.ndarray  # int64 (N,)

    @classmethod
    def from_paths(cls, paths: Sequence[str], labels: Sequence[int]) -> FileTable:
        """The table of ``paths[i]`` labelled ``labels[i]``."""
        if len(paths) != len(labels):
            raise ValueError(f"got {len(paths)} paths but {len(labels)} labels; give one label per path")
        encoded = [os.fsencode(p) for p in paths]  # fsencode: names that are not valid UTF-8 survive
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        path_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        return cls(path_bytes, offsets, np.asarray(labels, dtype=np.int64).reshape(-1))

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> str:
        """The path of file ``index``."""
        start, end = self.offsets[index], self.offsets[index + 1]
        return os.fsdecode(self.path_bytes[start:end].tobytes())

    def items(self) -> Iterator[tuple[str, int]]:
        """``(path, label)`` of every file, in order (made one at a time: nothing per file is kept)."""
        data, offsets = self.path_bytes.tobytes(), self.offsets.tolist()
        for i, label in enumerate(self.labels.tolist()):
            yield os.fsdecode(data[offsets[i]:offsets[i + 1]]), label

    def take(self, indices: Sequence[int] | np.ndarray) -> FileTable:
        """The files at ``indices``, in that order (a split, a subset), without a Python object per file."""
        idx = np.asarray(indices, dtype=np.int64)
        starts, lengths = self.offsets[idx], self.offsets[idx + 1] - self.offsets[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # byte k of the new buffer comes from starts[file] + (k - offsets[file]): one gather for all files
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return FileTable(self.path_bytes[gather], offsets, self.labels[idx])


class ImageLoader:
    """A file as its source image: decoded, shrunk to ``short_side``, read from ``cache`` when it has it.

    Args:
        channels: 1 or 3.
        short_side: :func:`~ignite_app.data.transforms.source_short_side` of the run.
        cache: the ``--cache`` folder's :class:`~ignite_app.data.cache.ImageCache`, or None.
    """

    def __init__(self, channels: int, short_side: int, cache: ImageCache | None = None) -> None:
        if cache is not None and (cache.short_side, cache.channels) != (short_side, channels):
            raise ValueError(f"the cache holds images of short side {cache.short_side} with {cache.channels} "
                             f"channels, the loader makes {short_side} with {channels}; build both from one config")
        self.channels, self.short_side, self.cache = channels, short_side, cache

    def decode(self, path: str) -> Tensor:
        """The source image of ``path``, decoded from the file (never from the cache)."""
        return decode_image(path, self.channels, self.short_side)

    def __call__(self, path: str) -> Tensor:
        """The source image of ``path``; raises :class:`~ignite_app.data.decode.UnreadableImage`."""
        return self.decode(path) if self.cache is None else self.cache.load(path, self.decode)


class BadImage(NamedTuple):
    """An image file that could not be decoded, as data (an exception would not cross a worker's queue intact)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class Flagged(NamedTuple):
    """An item that met unreadable files: the image in their place (a replacement), or None (left out)."""

    image: Tensor | None
    label: int
    unreadable: tuple[BadImage, ...]


class Batch(tuple):
    """``(images, labels)``, as the engines unpack it, plus the unreadable files met while making it."""

    unreadable: tuple[BadImage, ...]

    def __new__(cls, images: Tensor, labels: Tensor, unreadable: Sequence[BadImage] = ()) -> Batch:
        batch = super().__new__(cls, (images, labels))
        batch.unreadable = tuple(unreadable)
        return batch

    def __reduce__(self) -> tuple[Any, ...]:  # from a worker to the main process, with its files
        return Batch, (self[0], self[1], self.unreadable)

    def pin_memory(self) -> Batch:
        """Called by the DataLoader's pinning thread (CUDA): the tensors pinned, the files kept."""
        return Batch(self[0].pin_memory(), self[1].pin_memory(), self.unreadable)


def replacement_key(index: int, seed: int, attempt: int, size: int) -> tuple[int, int]:
    """The ``(index, seed)`` that replaces an unreadable training sample on its ``attempt``-th try: a pure function
    of its arguments, so every rank and every resume make the same choice."""
    words = np.random.SeedSequence([seed, index, attempt]).generate_state(2, dtype=np.uint64)
    return int(words[0] % np.uint64(size)), int(words[1] >> np.uint64(2))


def _split_key(key: int | tuple[int, int]) -> tuple[int, int | None]:
    """``(index, seed)`` of an index or of a ``SampleKey(index, seed)`` (any 2-tuple)."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return int(key), None


class ImageDataset(Dataset):
    """Image files and their labels: item ``i`` (or ``SampleKey(i, seed)``) is ``(uint8 image, label)``.

    Args:
        table: the files and labels.
        loader: file -> source image (decode, or the cache).
        transform: source image -> the image the model gets (a transform of :mod:`ignite_app.data.transforms`).
        on_bad_image: None raises :class:`~ignite_app.data.decode.UnreadableImage`; ``"error"`` and ``"skip"``
            return a :class:`Flagged` item instead (see the module docstring).
    """

    def __init__(self, table: FileTable, loader: ImageLoader, transform: Transform,
                 on_bad_image: str | None = None) -> None:
        if on_bad_image not in (None, "error", "skip"):
            raise ValueError(f"on_bad_image must be None, 'error' or 'skip', got {on_bad_image!r}")
        self.table, self.loader, self.transform, self.on_bad_image = table, loader, transform, on_bad_image

    @property
    def takes_sample_seeds(self) -> bool:
        """Whether the training sampler must send ``SampleKey`` items (the transform is random)."""
        return isinstance(self.transform, SeededTransform)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int] | Flagged:
        index, seed = _split_key(key)
        try:
            return self._item(index, seed)
        except UnreadableImage as e:
            if self.on_bad_image is None:
                raise
            bad = BadImage(e.path, e.reason)
        if self.on_bad_image == "skip" and seed is not None:  # training: another sample in its place
            return self._replacement(index, seed, bad)
        return Flagged(None, int(self.table.labels[index]), (bad,))

    def _item(self, index: int, seed: int | None) -> tuple[Tensor, int]:
        image = self.loader(self.table.path(index))
        return self.transform(image, seed), int(self.table.labels[index])

    def _replacement(self, index: int, seed: int, bad: BadImage) -> Flagged:
        met = [bad]
        for attempt in range(1, MAX_REPLACEMENTS + 1):
            other, other_seed = replacement_key(index, seed, attempt, len(self))
            try:
                return Flagged(*self._item(other, other_seed), tuple(met))
            except UnreadableImage as e:
                met.append(BadImage(e.path, e.reason))
        return Flagged(None, int(self.table.labels[index]), tuple(met))

    def collate_fn(self, items: list[Any]) -> Batch:
        """Stack the images and labels that are there; carry the unreadable files in the :class:`Batch`."""
        unreadable = [bad for item in items if isinstance(item, Flagged) for bad in item.unreadable]
        kept = [(item.image, item.label) if isinstance(item, Flagged) else item for item in items
                if not isinstance(item, Flagged) or item.image is not None]
        if kept:
            images, labels = default_collate(kept)  # in a worker: straight into shared memory
        else:  # every image of the batch left out: an empty batch of the right shape
            size = getattr(self.transform, "size", 0)
            images = torch.empty((0, self.loader.channels, size, size), dtype=torch.uint8)
            labels = torch.empty(0, dtype=torch.int64)
        return Batch(images, labels, unreadable)


class ArrayDataset(Dataset):
    """Images held in memory as one uint8 tensor (N, C, H, W) (the standard datasets), transformed per sample."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Transform | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or labels.shape != (len(images),):
            raise ValueError(f"expected uint8 images (N, C, H, W) and labels (N,), got {images.dtype} "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
        self.images, self.labels, self.transform = images, labels.to(torch.int64), transform

    @property
    def takes_sample_seeds(self) -> bool:
        return isinstance(self.transform, SeededTransform)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int]:
        index, seed = _split_key(key)
        image = self.images[index]
        return (image if self.transform is None else self.transform(image, seed)), int(self.labels[index])
