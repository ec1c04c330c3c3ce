"""Resuming a run: find the checkpoint, check that it fits this config, put every object back as it was.

Everything is checked before anything on disk is touched: a refused resume leaves the run folder as it was.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
from ignite.handlers import Checkpoint

from ignite_app.checkpoint import CheckpointError, Value, load_checkpoint, newest_loadable
from ignite_app.config import ConfigError, TrainConfig

log = logging.getLogger("ignite_app")


@dataclass(frozen=True)
class ResumePoint:
    """A loaded training checkpoint and where it came from."""

    path: Path
    checkpoint: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return self.path.parent.parent

    @property
    def iteration(self) -> int:
        return int(self.checkpoint["trainer"]["iteration"])

    @property
    def saved_at(self) -> float:
        return float(self.checkpoint["saved_at"])

    @property
    def config(self) -> TrainConfig:
        try:
            return TrainConfig.from_dict(self.checkpoint["config"])
        except (ConfigError, KeyError, TypeError) as e:
            raise CheckpointError(f"checkpoint {self.path} holds no usable config ({e})") from None


def find_resume_point(config: TrainConfig) -> tuple[ResumePoint | None, TrainConfig]:
    """The checkpoint ``config.resume`` asks for, and the config with the run folder it belongs to.

    ``--resume auto`` takes the newest readable training checkpoint of ``--run-name`` (``None`` when there is none
    yet: the run starts); ``--resume PATH`` takes that file, and the run continues in the folder that holds it.
    """
    if config.resume is None:
        return None, config
    if config.resume == "auto":
        folder = config.output_dir / str(config.run_name) / "checkpoints"
        found = newest_loadable(folder) if folder.is_dir() else None
        if found is None:
            log.info("no checkpoint of run %r in %s yet: starting it", config.run_name, config.output_dir)
            return None, config
        point = ResumePoint(*found)
    else:
        path = Path(config.resume)
        point = ResumePoint(path, load_checkpoint(path))
        if path.parent.name != "checkpoints" or not (point.run_dir / "config.json").is_file():
            raise CheckpointError(f"--resume {path}: not a checkpoint inside a run folder "
                                  "(RUN/checkpoints/training_N.pt); pass one of those, or --resume auto")
        if config.run_name not in (None, point.run_dir.name):
            raise CheckpointError(f"--resume {path} belongs to run {point.run_dir.name!r}, not --run-name "
                                  f"{config.run_name!r}; drop --run-name or make them agree")
    return point, dataclasses.replace(config, output_dir=point.run_dir.parent, run_name=point.run_dir.name)


def check_resumable(point: ResumePoint, config: TrainConfig, classes: tuple[str, ...],
                    normalization: Mapping[str, Sequence[float]] | None = None) -> None:
    """Refuse a checkpoint of another kind of run, or of a run that has nothing left to do.

    Args:
        point: the checkpoint.
        config: this run's config.
        classes: this run's classes.
        normalization: this run's ``{"mean": [...], "std": [...]}``; they were computed from the training images, so
            a difference means that the training set changed (images added, removed, edited, or now unreadable).

    Raises:
        CheckpointError: the message lists every difference, or says why the run is complete.
    """
    differences = config.result_differences(point.config)
    saved_classes = tuple(point.checkpoint.get("classes", ()))
    if saved_classes != classes:
        differences.append(f"classes: {list(saved_classes)} -> {list(classes)}")
    saved = point.checkpoint.get("normalization")  # absent from checkpoints of earlier versions
    if saved is not None and normalization is not None and not _same_constants(saved, normalization):
        differences.append(f"training-set mean and std (the training images changed): {dict(saved)} -> "
                           f"{dict(normalization)}")
    if differences:
        lines = "\n  ".join(differences)
        raise CheckpointError(f"checkpoint {point.path} comes from an incompatible run; these differ "
                              f"(checkpoint -> now):\n  {lines}\nresume with the checkpoint's values, or start a "
                              "new run without --resume")
    saved_world = int(point.checkpoint.get("world_size", 1))
    if saved_world != idist.get_world_size():
        raise CheckpointError(f"checkpoint {point.path} was trained by {saved_world} process(es), this run has "
                              f"{idist.get_world_size()}: each process's share of the data and the batch per step "
                              f"would change; resume with {saved_world} process(es)")
    trainer = point.checkpoint["trainer"]
    epochs_done = point.iteration // trainer["epoch_length"]
    if point.iteration >= config.epochs * trainer["epoch_length"]:
        raise CheckpointError(f"run {point.run_dir.name!r} is complete: it trained {epochs_done} epochs "
                              f"(--epochs {config.epochs}); pass a larger --epochs to train it further")
    stopping = point.checkpoint.get("early_stopping")
    if stopping and config.early_stopping_patience and stopping["counter"] >= config.early_stopping_patience:
        raise CheckpointError(f"run {point.run_dir.name!r} is complete: early stopping ended it after epoch "
                              f"{epochs_done} ({stopping['counter']} validations without a better accuracy)")


def _same_constants(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]]) -> bool:
    # a tolerance: the digits' float reductions may round differently with another number of threads
    return all(len(a[k]) == len(b[k]) and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9)
                                              for x, y in zip(a[k], b[k])) for k in ("mean", "std"))


def restore(to_load: Mapping[str, Any], point: ResumePoint) -> None:
    """Load every object of ``to_load`` from the checkpoint (ignite's ``Checkpoint.load_objects``).

    Plain values (:class:`~ignite_app.checkpoint.Value`: classes, config...) are only written, never loaded back, so
    a checkpoint from before one of them was added still resumes.
    """
    to_load = {k: v for k, v in to_load.items() if k in point.checkpoint or not isinstance(v, Value)}
    missing = sorted(set(to_load) - set(point.checkpoint))
    if missing:
        raise CheckpointError(f"checkpoint {point.path} lacks {missing}; it was not written by this version of "
                              "the app's training checkpoint")
    Checkpoint.load_objects(to_load, point.checkpoint)
    log.info("resumed from %s (epoch %d, iteration %d)", point.path,
             point.iteration // point.checkpoint["trainer"]["epoch_length"], point.iteration)
