"""What a dataset gives the app: :class:`DataBundle`, and the checks that turn a registered dataset's result into one.

A dataset registered with :func:`ignite_app.register_dataset` is a function ``fn(config)`` that returns either a
``(train_dataset, val_dataset, class_names)`` triple or a :class:`DataBundle` (the richer form: it may add the
input shape, the normalisation constants, the images left out and a fingerprint of the files). Items are
``(image, label)`` pairs: the image a (C, H, W) tensor, uint8 (0..255) or float in [0, 1]; the label an int. The
model's preprocessing (:class:`ignite_app.models.Preprocess`) converts and normalises the pixels on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ignite_app.config import TrainConfig
from ignite_app.data.samplers import seeded_generator
from ignite_app.registry import DATASETS
from ignite_app.runstate.fingerprint import DataFingerprint

STATS_SAMPLE = 2_000  # training images the mean and std are computed from, when the dataset does not give them


@dataclass(frozen=True)
class DataBundle:
    """The datasets of a run and what the model and the checkpoints need to know about them.

    Args:
        train: training items ``(image (C, H, W) uint8 or float in [0, 1], label)``.
        val: validation items, the same way.
        classes: class names, index i = label i.
        input_shape: (C, H, W); default: the first training image's shape.
        mean: per-channel mean of the training images on the [0, 1] scale; default: computed from a seeded sample.
        std: idem, standard deviation.
        skipped: ``"path: reason"`` of each image left out by ``--on-bad-image skip``.
        fingerprint: what a resume compares to refuse changed data; default: none (nothing is compared).
    """

    train: Dataset
    val: Dataset
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    skipped: tuple[str, ...] = ()
    fingerprint: DataFingerprint | None = None


def build_data(config: TrainConfig, data: Any = None) -> DataBundle:
    """The datasets of a run: ``data`` when given from Python, else the registered dataset ``config.dataset``.

    Args:
        config: the run's config (a registered dataset receives it whole).
        data: a ``(train, val, class_names)`` triple or a :class:`DataBundle` (``build(config, data=...)``).

    Raises:
        DataError: (folder datasets) the data cannot be used as it is; the message names the path and the fix.
        TypeError: the dataset does not follow the contract.
    """
    if data is not None:
        return as_bundle(data, "build(config, data=...)")
    return as_bundle(DATASETS.get(config.dataset)(config), f"dataset {config.dataset!r}")


def as_bundle(result: Any, source: str) -> DataBundle:
    """A dataset entry's result as a complete :class:`DataBundle`: its items checked, its shape and constants filled.

    Args:
        result: a :class:`DataBundle` or a ``(train, val, classes)`` triple.
        source: who made it, for messages ("dataset 'mine'", "build(data=...)").

    Raises:
        TypeError: the result or its items do not follow the contract; the message says what was received.
    """
    if isinstance(result, DataBundle):
        bundle = result
    elif isinstance(result, (tuple, list)) and len(result) == 3:
        bundle = DataBundle(result[0], result[1], tuple(result[2]))
    else:
        raise TypeError(f"{source} returned a {type(result).__name__}; expected (train_dataset, val_dataset, "
                        "class_names) or a DataBundle")
    classes = tuple(bundle.classes)
    for name, dataset in (("training", bundle.train), ("validation", bundle.val)):
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise TypeError(f"{source}: the {name} set is empty")
        _check_item(dataset[0], source, name, len(classes))
    shape = bundle.input_shape or tuple(bundle.train[0][0].shape)
    mean, std = (bundle.mean, bundle.std) if bundle.mean is not None and bundle.std is not None else \
        sample_stats(bundle.train)
    return replace(bundle, classes=classes, input_shape=tuple(shape), mean=tuple(mean), std=tuple(std))


def _check_item(item: Any, source: str, split: str, num_classes: int) -> None:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"{source}: a {split} item is a {type(item).__name__}; expected (image, label)")
    image, label = item
    if not isinstance(image, Tensor) or image.ndim != 3:
        raise TypeError(f"{source}: a {split} image must be a (C, H, W) tensor, got "
                        f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}")
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise TypeError(f"{source}: {split} images must be uint8 (0..255) or float in [0, 1], got {image.dtype}")
    if not 0 <= int(label) < num_classes:
        raise TypeError(f"{source}: a {split} label is {int(label)}, outside 0..{num_classes - 1} "
                        f"({num_classes} class names)")


def sample_stats(dataset: Dataset, limit: int = STATS_SAMPLE, seed: int = 0) -> tuple[tuple[float, ...],
                                                                                        tuple[float, ...]]:
    """Per-channel mean and std of up to ``limit`` images of ``dataset`` (a seeded sample), on the [0, 1] scale."""
    n = len(dataset)  # type: ignore[arg-type]
    indices = torch.randperm(n, generator=seeded_generator(seed))[:limit].tolist() if n > limit else range(n)
    images = torch.stack([_unit_scale(dataset[i][0]) for i in indices])
    return channel_stats(images)


def _unit_scale(image: Tensor) -> Tensor:
    return image.float() / 255 if image.dtype == torch.uint8 else image.float()


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``images`` (N, C, H, W) on their own scale; a constant channel gets std 1."""
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3))
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


def dataset_labels(dataset: Dataset) -> Tensor:
    """The label of every item of ``dataset``, (N,) int64: its ``labels`` attribute when it has one (the built-in
    datasets do), else read item by item (a dataset without it decodes each image once)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [int(dataset[i][1]) for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.as_tensor(labels, dtype=torch.int64)
