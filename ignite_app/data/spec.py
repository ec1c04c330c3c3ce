"""What a dataset gives the app: :class:`DataBundle`, and the checks that turn a registered dataset's result into one.

A dataset registered with :func:`ignite_app.register_dataset` is a function ``fn(config)`` that returns either a
``(train_dataset, val_dataset, class_names)`` triple or a :class:`DataBundle` (the richer form: it may add the
input shape, the normalisation constants, the images left out and a fingerprint of the files). Items are
``(image, label)`` pairs: the image a (C, H, W) tensor, uint8 (0..255) or float in [0, 1]; the label an int. The
model's preprocessing (:class:`ignite_app.models.Preprocess`) converts and normalises the pixels on the device.

A dataset that gives no mean and std gets them from a seeded sample of at most a few thousand of its training images
(:func:`~ignite_app.data.stats.sample_pixel_stats`), one rule for every dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ignite_app.config import TrainConfig
from ignite_app.data.badimages import bad_images_message
from ignite_app.data.pipeline import Flagged, ImageDataset
from ignite_app.data.samplers import SampleKey
from ignite_app.data.stats import sample_pixel_stats
from ignite_app.errors import DataError
from ignite_app.registry import DATASETS
from ignite_app.runstate.fingerprint import DataFingerprint


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
        skipped: ``"path: reason"`` of each image left out by ``--on-bad-image skip`` before training.
        fingerprint: what a resume compares to refuse changed data; default: none (nothing is compared).
        stats_view: the training images without augmentation, that the mean and std are sampled from when they are
            not given; default: ``train``.
        stats_images: how many images the mean and std were computed from (filled in when they are sampled; None
            when the dataset gave them).
        crop_fraction: (image files) the centre crop's share of the validation view's short side, which evaluation
            and prediction rebuild from the checkpoint.
    """

    train: Dataset
    val: Dataset
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    skipped: tuple[str, ...] = ()
    fingerprint: DataFingerprint | None = None
    stats_view: Dataset | None = None
    stats_images: int | None = None
    crop_fraction: float | None = None


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
        return as_bundle(data, "build(config, data=...)", config)
    return as_bundle(DATASETS.get(config.dataset)(config), f"dataset {config.dataset!r}", config)


def as_bundle(result: Any, source: str, config: TrainConfig | None = None) -> DataBundle:
    """A dataset entry's result as a complete :class:`DataBundle`: its items checked, its shape and constants filled.

    Args:
        result: a :class:`DataBundle` or a ``(train, val, classes)`` triple.
        source: who made it, for messages ("dataset 'mine'", "build(data=...)").
        config: the run's config (``--num-workers`` and ``--on-bad-image`` for the mean-and-std sample).

    Raises:
        TypeError: the result or its items do not follow the contract; the message says what was received.
        DataError: an image of the mean-and-std sample cannot be decoded (``--on-bad-image error``).
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
        _check_item(first_item(dataset), source, name, len(classes))
    shape = bundle.input_shape or tuple(first_item(bundle.train)[0].shape)
    bundle = replace(bundle, classes=classes, input_shape=tuple(shape))
    config = config or TrainConfig()
    if config.uses_pretrained_input:  # the network's pretrained configuration gives the mean and std
        return bundle
    if bundle.mean is None or bundle.std is None:
        bundle = with_sampled_stats(bundle, config)
    return replace(bundle, mean=tuple(bundle.mean), std=tuple(bundle.std))  # type: ignore[arg-type]


def with_sampled_stats(bundle: DataBundle, config: TrainConfig) -> DataBundle:
    """``bundle`` with the mean and std of a seeded sample of its training images (:mod:`ignite_app.data.stats`).

    An unreadable image in the sample is refused (``--on-bad-image error``), or left out of the sample and listed
    with the files the run skips (``skip``).
    """
    view = bundle.stats_view or bundle.train
    # worker processes for image files only: images already in memory are summed faster than workers start
    workers = config.loader_workers if isinstance(view, ImageDataset) else 0
    sample = sample_pixel_stats(view, bundle.input_shape[0], config.stats_images,  # type: ignore[index]
                                num_workers=workers)
    if sample.unreadable and config.on_bad_image == "error":
        raise DataError(bad_images_message(list(sample.unreadable)))
    if sample.images == 0:
        raise DataError("no image of the mean-and-std sample can be decoded:\n  "
                        + "\n  ".join(map(str, sample.unreadable[:10])) + "\nreplace them with readable images")
    mean, std = sample.stats.mean_std()
    return replace(bundle, mean=mean, std=std, stats_images=sample.images,
                   skipped=(*bundle.skipped, *map(str, sample.unreadable)))


def first_item(dataset: Dataset) -> Any:
    """Item 0 of ``dataset``, fetched as the loaders fetch it (with a seed when it augments). An image file that
    cannot be decoded gives no item to check: the loaders deal with it (``--on-bad-image``)."""
    item = dataset[SampleKey(0, 0)] if getattr(dataset, "takes_sample_seeds", False) else dataset[0]
    if isinstance(item, Flagged):
        return (item.image, item.label) if item.image is not None else None
    return item


def _check_item(item: Any, source: str, split: str, num_classes: int) -> None:
    if item is None:
        return
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
