"""Image-folder datasets (``--dataset folder``): the files a scan found, decoded when they are loaded.

Start-up lists the files (:mod:`ignite_app.data.scan`: ``os.scandir``, flat tables), reads the size of each for the
data's fingerprint, and computes the mean and std from a seeded sample of at most a few thousand training images
(:mod:`ignite_app.data.stats`, as for any dataset that gives no constants). Nothing else is decoded before training
unless ``--check-images`` asks for it: an unreadable file is met when it is loaded (:mod:`ignite_app.data.badimages`).
Items are uint8 images made by :mod:`ignite_app.data.pipeline` and :mod:`ignite_app.data.transforms`: the model's
preprocessing normalises them.
"""

from __future__ import annotations

from pathlib import Path

from ignite_app.config import TrainConfig, default_image_size
from ignite_app.data.cache import ImageCache
from ignite_app.data.imagecheck import check_images
from ignite_app.data.policies import sample_policy
from ignite_app.data.pipeline import FileTable, ImageDataset, ImageLoader
from ignite_app.data.scan import ClassList, FolderScan, label_map_classes, scan_folder
from ignite_app.data.spec import DataBundle
from ignite_app.data.transforms import (
    DEFAULT_CROP_FRACTION,
    DEFAULT_SCALE_MIN,
    EvalTransform,
    PolicyOnViewTransform,
    TrainTransform,
    Transform,
    source_short_side,
)
from ignite_app.models import model_spec
from ignite_app.runstate.fingerprint import file_fingerprint


def image_size(config: TrainConfig) -> int:
    """``--image-size``, else its default for image folders (:func:`~ignite_app.config.default_image_size`)."""
    return int(default_image_size(config))  # type: ignore[arg-type]  # never None for folders


def crop_fraction(config: TrainConfig) -> float:
    """``--crop-fraction``, else the network's (:class:`~ignite_app.models.ModelSpec`), else 0.875."""
    if config.crop_fraction is not None:
        return config.crop_fraction
    return model_spec(config.model).crop_fraction or DEFAULT_CROP_FRACTION


def image_loader(config: TrainConfig, crop: float) -> ImageLoader:
    """Files -> source images of the run's size (short side ``ceil(--image-size / crop)``), through ``--cache``."""
    side = source_short_side(image_size(config), crop)
    cache = ImageCache(config.cache, side, config.channels) if config.cache is not None else None
    return ImageLoader(config.channels, side, cache)


def train_transform(config: TrainConfig) -> Transform:
    """The training view of a folder image: a random resized crop and a flip (``--augment``), then the
    ``--auto-augment`` policy and ``--random-erasing`` (:mod:`ignite_app.data.policies`) under the sample's seed;
    with ``--no-augment``, the validation view (then the policy, if any)."""
    policy = sample_policy(config.auto_augment, config.random_erasing)
    if config.augments:
        return TrainTransform(image_size(config), config.scale_min or DEFAULT_SCALE_MIN, policy=policy)
    if policy is not None:
        return PolicyOnViewTransform(image_size(config), crop_fraction(config), policy)
    return EvalTransform(image_size(config), crop_fraction(config))


def build_folder_data(config: TrainConfig) -> DataBundle:
    """The training and validation sets of ``--dataset folder``, checked, with their fingerprint.

    Raises:
        DataError: anything :func:`~ignite_app.data.scan.scan_folder` (or, with ``--check-images``,
            :func:`~ignite_app.data.imagecheck.check_images`) refuses.
    """
    classes = label_map_classes(config.label_map) if config.label_map is not None else None
    data_dir = Path(str(config.data_dir))
    scan = scan_folder(data_dir, config.val_split, classes)
    crop = crop_fraction(config)
    loader = image_loader(config, crop)
    view = EvalTransform(image_size(config), crop)
    train, val, skipped = checked(scan, config, loader.short_side)
    return DataBundle(
        train=ImageDataset(train, loader, train_transform(config), config.on_bad_image),
        val=ImageDataset(val, loader, view, config.on_bad_image),
        classes=scan.classes, input_shape=(config.channels, image_size(config), image_size(config)), skipped=skipped,
        stats_view=ImageDataset(train, loader, view),  # raises on an unreadable file: the sample reports it
        crop_fraction=crop,
        fingerprint=file_fingerprint(data_dir, {"train": train.items(), "val": val.items()}, scan.classes))


def checked(scan: FolderScan, config: TrainConfig, short_side: int,
            listed_in: str = "train.log") -> tuple[FileTable, FileTable, tuple[str, ...]]:
    """The scan's training and validation files; with ``--check-images``, only those that decode, and the others."""
    if not config.check_images:
        return scan.train, scan.val, ()
    result = check_images(scan, config.channels, short_side, config.on_bad_image, config.loader_workers,
                          listed_in=listed_in)
    return result.train, result.val, tuple(map(str, result.skipped))


def folder_dataset(config: TrainConfig) -> DataBundle:
    """The registered ``folder`` dataset."""
    return build_folder_data(config)


def folder_eval_dataset(config: TrainConfig, classes: ClassList, crop: float) -> tuple[ImageDataset, tuple[str, ...]]:
    """The images to evaluate (see :func:`~ignite_app.data.scan.scan_folder`'s ``evaluation``), in the validation
    view of a model trained with centre crop ``crop``.

    Returns the dataset and, with ``--check-images``, the ``path: reason`` lines of the images it left out.
    """
    scan = scan_folder(Path(str(config.data_dir)), config.val_split, classes, evaluation=True)
    loader = image_loader(config, crop)
    _, val, skipped = checked(scan, config, loader.short_side, listed_in="the output")
    return ImageDataset(val, loader, EvalTransform(image_size(config), crop), config.on_bad_image), skipped
