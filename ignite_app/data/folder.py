"""Image-folder datasets (``--dataset folder``): the images a scan found, checked, decoded on access.

Before training, every image is decoded once (in ``--num-workers`` processes, :mod:`ignite_app.data.imagecheck`): that
pass finds unreadable files and sums the training pixels for the normalisation constants. It costs about one
epoch of loading. Items are uint8 images: the model's preprocessing normalises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from ignite_app.config import TrainConfig, default_image_size
from ignite_app.data.imagecheck import check_images
from ignite_app.data.samplers import SampleKey
from ignite_app.data.scan import ClassList, Sample, label_map_classes, scan_folder
from ignite_app.data.spec import DataBundle
from ignite_app.data.transforms import ImageTransform
from ignite_app.runstate.fingerprint import file_fingerprint


class FolderDataset(Dataset):
    """Image files and their labels, decoded on access (in the loader's worker processes).

    An item is fetched by index (validation, prediction: never augmented) or by :class:`SampleKey` (training):
    the key's seed then drives the random crop and flip, so augmentation does not depend on the worker.
    """

    def __init__(self, samples: Sequence[Sample], transform: ImageTransform) -> None:
        self.paths = [path for path, _ in samples]  # plain strings: cheap to send to the worker processes
        self.labels = [label for _, label in samples]
        self.transform = transform

    @property
    def takes_sample_seeds(self) -> bool:
        """Whether the training sampler should send :class:`SampleKey` items (the dataset augments)."""
        return self.transform.augment

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, int]:
        index, seed = (key.index, key.seed) if isinstance(key, SampleKey) else (int(key), None)
        return self.transform(self.transform.load(self.paths[index]), seed), self.labels[index]


def build_folder_data(config: TrainConfig) -> DataBundle:
    """The training and validation sets of ``--dataset folder``, checked, with the training set's mean and std.

    Raises:
        DataError: anything :func:`~ignite_app.data.scan.scan_folder` or :func:`~ignite_app.data.imagecheck.check_images` refuses.
    """
    classes = label_map_classes(config.label_map) if config.label_map is not None else None
    scan = scan_folder(Path(str(config.data_dir)), config.val_split, classes)
    size = default_image_size(config)
    checked = check_images(scan, config.channels, size, config.on_bad_image, config.num_workers, with_stats=True,
                           crop_pct=config.crop_pct, interpolation=config.interpolation)
    mean, std = checked.stats.mean_std()
    shape = (config.channels, size, size)
    return DataBundle(
        train=FolderDataset(checked.train, folder_transform(config, augment=config.augments)),
        val=FolderDataset(checked.val, folder_transform(config)),
        classes=scan.classes, input_shape=shape, mean=mean, std=std,
        skipped=tuple(str(bad) for bad in checked.skipped),
        fingerprint=file_fingerprint(Path(str(config.data_dir)), {"train": checked.train, "val": checked.val},
                                     scan.classes))


def folder_dataset(config: TrainConfig) -> DataBundle:
    """The registered ``folder`` dataset."""
    return build_folder_data(config)


def folder_eval_dataset(config: TrainConfig, classes: ClassList) -> tuple[FolderDataset, tuple[str, ...]]:
    """The images to evaluate (see :func:`~ignite_app.data.scan.scan_folder`'s ``evaluation``).

    Returns the dataset and the ``path: reason`` lines of the images left out by ``--on-bad-image skip``.
    """
    scan = scan_folder(Path(str(config.data_dir)), config.val_split, classes, evaluation=True)
    transform = folder_transform(config)
    checked = check_images(scan, config.channels, transform.size, config.on_bad_image, config.num_workers,
                           with_stats=False, listed_in="the output", crop_pct=config.crop_pct,
                           interpolation=config.interpolation)
    return FolderDataset(checked.val, transform), tuple(str(bad) for bad in checked.skipped)


def folder_transform(config: TrainConfig, augment: bool = False) -> ImageTransform:
    """How the run's config turns image files into uint8 images (training, evaluation and prediction alike)."""
    return ImageTransform(default_image_size(config), config.channels, augment=augment, crop_pct=config.crop_pct,
                          interpolation=config.interpolation)
