"""Evaluate a saved model: rebuild it and its classes from the checkpoint, then run the evaluator.

Nothing about the data preparation is recomputed: the classes, the image size and channels (in the saved config)
and the validation view's centre crop come from the checkpoint, and the normalisation constants, a channel repeat
and a resize are part of the saved model (its preprocessing, described in the checkpoint's ``normalization``), so
evaluation feeds it the raw pixels training validated on, through the same pipeline (:mod:`ignite_app.data.pipeline`).
A network from a model zoo is rebuilt from its name alone: nothing is downloaded or reopened. A standard dataset is
evaluated on the run's validation share of its training set, or with ``split="test"`` on its official test set.
The report carries the scores of the probabilities (average precision, ROC-AUC, calibration: ``report.scores``).
``scripts/evaluate.py --output DIR`` writes the report CSVs with :mod:`ignite_app.reporting.writers`, in the format of a
training run's ``reports/`` folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ignite_app.config import STANDARD_DATASETS, ConfigError, TrainConfig
from ignite_app.data.badimages import attach_bad_images
from ignite_app.data.pipeline import ImageDataset
from ignite_app.data.samplers import ShardSampler
from ignite_app.data.spec import DataBundle, build_data
from ignite_app.data.transforms import DEFAULT_CROP_FRACTION
from ignite_app.engines import StepOptions, create_evaluator
from ignite_app.errors import UsageError
from ignite_app.metrics import REPORT, ClassificationReport
from ignite_app.metrics.validation import validation_metrics
from ignite_app.models import Preprocess, build_classifier
from ignite_app.runstate.checkpoint import CheckpointError, load_checkpoint

MODEL_KEYS = ("state_dict", "model")  # best_model.pt, training_<iteration>.pt


@dataclass(frozen=True)
class SavedModel:
    """A trained model and everything needed to feed it data prepared as in training."""

    path: Path
    model: nn.Module
    config: TrainConfig  # the training run's config: dataset, image size, channels...
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # the training set's per-channel normalisation constants
    std: tuple[float, ...]
    crop_fraction: float = DEFAULT_CROP_FRACTION  # (image files) the validation view: short side, centre crop


def model_from_checkpoint(checkpoint: dict[str, Any], path: Path) -> tuple[nn.Module, TrainConfig]:
    """The model a checkpoint was trained as (preprocessing and network), with its weights, and its config.

    Raises:
        CheckpointError: the file holds no model of this app, or a network given from Python that its config
            cannot rebuild.
    """
    try:
        config = TrainConfig.from_dict(checkpoint["config"])
    except (KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"checkpoint {path} holds no usable training config ({e})") from None
    weights = next((checkpoint[k] for k in MODEL_KEYS if k in checkpoint), None)
    norm = checkpoint.get("normalization")
    if weights is None or "classes" not in checkpoint or "input_shape" not in checkpoint or not norm:
        raise CheckpointError(f"checkpoint {path} holds no model of this app (expected keys 'state_dict' or "
                              "'model', 'classes', 'input_shape' and 'normalization')")
    if config.python_model:
        raise CheckpointError(f"checkpoint {path} holds a network given from Python (build(config, model=...)), "
                              "which its config cannot rebuild: build that network yourself and load "
                              "checkpoint['state_dict'] into Classifier(Preprocess(mean, std), network)")
    # the architecture alone (never pretrained: the weights come from the checkpoint), behind the same preprocessing
    model = build_classifier(config.model, len(checkpoint["classes"]), tuple(checkpoint["input_shape"]),
                             preprocess=Preprocess.from_description(norm), drop_path=config.drop_path)
    model.load_state_dict(weights)
    return model, config


def load_saved_model(path: Path) -> SavedModel:
    """Load ``best_model.pt`` or a training checkpoint as a :class:`SavedModel` (on the CPU, in eval mode).

    Raises:
        CheckpointError: the file is unreadable, or lacks the model, the classes or the normalisation constants.
    """
    path = Path(path)
    checkpoint = load_checkpoint(path)
    model, config = model_from_checkpoint(checkpoint, path)
    norm = checkpoint["normalization"]
    crop = checkpoint.get("crop_fraction") or config.crop_fraction or DEFAULT_CROP_FRACTION
    return SavedModel(path, model.eval(), config, tuple(checkpoint["classes"]),
                      tuple(checkpoint["input_shape"]),  # type: ignore[arg-type]
                      tuple(map(float, norm["mean"])), tuple(map(float, norm["std"])), float(crop))


def evaluation_config(saved: SavedModel, dataset: str | None = None, data_dir: Path | None = None,
                      val_split: float | None = None, on_bad_image: str | None = None,
                      num_workers: int | None = None) -> TrainConfig:
    """The config that describes the data to evaluate ``saved`` on.

    Without ``data_dir``, and without a ``dataset`` other than the checkpoint's, it is the training run's own
    validation data. Otherwise the data options come from the arguments alone (``--val-split`` is not inherited:
    a test folder is evaluated whole). The image size and channels always stay the checkpoint's.

    Raises:
        ConfigError: the options contradict each other (``--dataset folder`` without a data folder, say).
    """
    changes: dict[str, Any] = {}
    if data_dir is not None or dataset not in (None, saved.config.dataset):
        dataset = dataset or ("folder" if data_dir is not None else saved.config.dataset)
        changes.update(dataset=dataset, data_dir=data_dir, val_split=val_split, label_map=None)
        if dataset != "folder":  # the folder-only training options, which another dataset refuses
            changes.update(augment=None, auto_augment="none", random_erasing=0.0)
    elif val_split is not None:
        changes["val_split"] = val_split
    if on_bad_image is not None:
        changes["on_bad_image"] = on_bad_image
    if num_workers is not None:
        changes["num_workers"] = num_workers
    return dataclasses.replace(saved.config, **changes)


def evaluation_data(saved: SavedModel, config: TrainConfig, split: str | None = None) -> tuple[Dataset,
                                                                                              tuple[str, ...]]:
    """The dataset to evaluate ``saved`` on: raw pixels, which the saved model's preprocessing normalises.

    Args:
        saved: the model.
        config: the data (see :func:`evaluation_config`).
        split: (standard datasets) ``"val"``, the run's validation share of the training set (the default), or
            ``"test"``, the official test set.

    Returns the dataset and the ``path: reason`` lines of images left out before evaluating (``--check-images``
    with ``--on-bad-image skip``); the others are met when they are loaded (:func:`evaluate_saved`).

    Raises:
        CheckpointError: the data's classes or input shape differ from the checkpoint's, or the training data came
            from Python and no other data was named.
        DataError: the folder data cannot be used (see :func:`ignite_app.data.scan.scan_folder`).
        UsageError: ``split="test"`` for data that has no official test split.
    """
    if split == "test" and config.dataset not in STANDARD_DATASETS:
        raise UsageError(f"--split test: only the standard datasets ({', '.join(STANDARD_DATASETS)}) have an "
                         f"official test split, and this evaluation is on --dataset {config.dataset}; evaluate "
                         "other images with --data-dir")
    if config.python_data and config.dataset == saved.config.dataset and config.data_dir == saved.config.data_dir:
        raise CheckpointError(f"checkpoint {saved.path} was trained on data given from Python (build(config, "
                              "data=...)), which its config cannot rebuild; name the data to evaluate on with "
                              "--dataset or --data-dir, or call evaluate_checkpoint(path, data=...) from Python")
    if config.dataset == "folder":
        from ignite_app.data.folder import folder_eval_dataset  # late: Pillow only when needed
        from ignite_app.data.scan import checkpoint_classes

        # the folders must hold exactly the checkpoint's classes; scan_folder refuses anything else
        return folder_eval_dataset(config, checkpoint_classes(saved.classes, saved.path), saved.crop_fraction)
    if config.dataset in STANDARD_DATASETS:
        from ignite_app.data.builtin import standard_eval_dataset

        dataset, classes = standard_eval_dataset(config, split or "val")
        check_matches(saved, DataBundle(dataset, dataset, classes, tuple(dataset[0][0].shape)))
        return dataset, ()
    bundle = build_data(config)
    check_matches(saved, bundle)
    return bundle.val, ()


def check_matches(saved: SavedModel, data: DataBundle) -> None:
    """Refuse data whose classes or input shape differ from the checkpoint's."""
    if data.classes != saved.classes:
        raise CheckpointError(f"checkpoint {saved.path} was trained on classes {list(saved.classes)}, the data has "
                              f"{list(data.classes)}; evaluate it on data with the same classes")
    if tuple(data.input_shape) != saved.input_shape:
        raise CheckpointError(f"checkpoint {saved.path} was trained on {'x'.join(map(str, saved.input_shape))} "
                              f"inputs, the data has {'x'.join(map(str, data.input_shape))}; evaluate it on data "
                              "of the same shape")


def evaluate_checkpoint(path: Path, data: DataBundle | Dataset | None = None, batch_size: int = 256,
                        device: torch.device | None = None, config: TrainConfig | None = None,
                        num_workers: int = 0) -> ClassificationReport:
    """The report of the model in checkpoint ``path``, exact over any number of processes.

    Args:
        path: ``best_model.pt`` or a training checkpoint.
        data: what to evaluate on: a :class:`DataBundle` (its ``val`` split, classes checked) or a dataset
            prepared for this checkpoint; default: the data ``config`` describes.
        batch_size: samples per batch in each process.
        device: default: this process's device.
        config: the data to build when ``data`` is None (see :func:`evaluation_config`); default: the
            checkpoint's own validation data.
        num_workers: data-loading worker processes.
    """
    saved = load_saved_model(Path(path))
    if data is None:
        data, _ = evaluation_data(saved, config or saved.config)
    elif isinstance(data, DataBundle):
        check_matches(saved, data)
    return evaluate_saved(saved, data.val if isinstance(data, DataBundle) else data, batch_size, device,
                          num_workers)


def evaluate_saved(saved: SavedModel, dataset: Dataset, batch_size: int = 256, device: torch.device | None = None,
                   num_workers: int = 0, left_out: list[str] | None = None) -> ClassificationReport:
    """Run ``saved``'s model over ``dataset``, each process on its share, and return the reduced report.

    Image files that cannot be decoded stop the evaluation with a ``DataError`` or, with ``--on-bad-image skip``
    (the dataset's ``on_bad_image``), are left out: every other image is counted once, and their ``path: reason``
    lines are added to ``left_out`` (every process gets them all).
    """
    device = device or idist.device()
    sampler = ShardSampler(len(dataset), idist.get_rank(), idist.get_world_size())  # no padding: exact counts
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        pin_memory=device.type == "cuda", collate_fn=getattr(dataset, "collate_fn", None))
    metrics = validation_metrics(saved.classes, nn.CrossEntropyLoss(), device)
    evaluator = create_evaluator(saved.model.to(device), StepOptions(device, non_blocking=device.type == "cuda"),
                                 metrics)
    bad_images = None
    if isinstance(dataset, ImageDataset) and dataset.on_bad_image is not None:
        bad_images = attach_bad_images(evaluator, None, dataset.on_bad_image, stop_fix="replace or delete it, or "
                                       "pass --on-bad-image skip to leave unreadable images out of the evaluation")
    evaluator.run(loader)
    if bad_images is not None and left_out is not None:
        left_out.extend(bad_images.lines())
    return evaluator.state.metrics[REPORT]
