"""Resuming a run: find the checkpoint, check that it fits this config, put every object back as it was.

Everything is checked before anything on disk is touched: a refused resume leaves the run folder as it was.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
from ignite.handlers import Checkpoint

from ignite_app.runstate.checkpoint import (
    CheckpointError,
    Value,
    is_training_checkpoint,
    load_checkpoint,
    newest_loadable,
    training_checkpoints,
)
from ignite_app.config import ConfigError, TrainConfig
from ignite_app.runstate.fingerprint import DataFingerprint, describe_changes, read_file_table
from ignite_app.runstate.rundir import BEST_MODEL, CHECKPOINTS_DIR, CONFIG_JSON, RunPaths, run_contents

log = logging.getLogger("ignite_app")

DATA_FINGERPRINT = "data_fingerprint"  # the checkpoints' entry: {"digest": ..., "files": N}


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

    ``--resume auto`` takes the newest usable training checkpoint of ``--run-name``; with none, the run starts in
    that folder, but only when the folder holds nothing it would overwrite (:func:`check_restartable`).
    ``--resume PATH`` takes that file, and the run continues in the folder that holds it.

    Raises:
        CheckpointError: the file cannot be resumed from, or ``auto`` found nothing usable in a folder that holds
            results; nothing on disk is changed.
    """
    if config.resume is None:
        return None, config
    if config.resume == "auto":
        paths = RunPaths(config.output_dir / str(config.run_name))
        found, skipped = newest_loadable(paths.checkpoints) if paths.checkpoints.is_dir() else (None, [])
        if found is None:
            check_restartable(paths, config, resume_auto_headline(paths, skipped),
                              "start a new run with another --run-name, or put a training checkpoint of this run "
                              f"back into {paths.checkpoints}")
            log.info("no checkpoint of run %r in %s yet: starting it", config.run_name, config.output_dir)
            return None, config
        point = ResumePoint(*found)
    else:
        path = Path(config.resume)
        point = ResumePoint(path, load_checkpoint(path))
        if not is_training_checkpoint(point.checkpoint):
            raise CheckpointError(_not_resumable_message(path))
        if path.parent.name != CHECKPOINTS_DIR:
            raise CheckpointError(f"--resume {path}: not a checkpoint inside a run folder "
                                  f"(RUN/{CHECKPOINTS_DIR}/training_N.pt); pass one of those, or --resume auto")
        if config.run_name not in (None, point.run_dir.name):
            raise CheckpointError(f"--resume {path} belongs to run {point.run_dir.name!r}, not --run-name "
                                  f"{config.run_name!r}; drop --run-name or make them agree")
    return point, dataclasses.replace(config, output_dir=point.run_dir.parent, run_name=point.run_dir.name)


def _not_resumable_message(path: Path) -> str:
    others = [p.name for p in training_checkpoints(path.parent)]
    what = "the best model" if path.name == BEST_MODEL else "a file without the trainer's state"
    hint = (f"resume from one of the run's training checkpoints ({', '.join(others)} in {path.parent})" if others
            else f"{path.parent} holds no training checkpoint (training_<iteration>.pt) to resume from")
    return (f"--resume {path}: this is {what}, which is for evaluation (scripts/evaluate.py) and fine-tuning, not "
            f"for resuming a run; {hint}, or pass --resume auto --run-name RUN")


def check_restartable(paths: RunPaths, config: TrainConfig, headline: str, fix: str) -> None:
    """Refuse to start a run afresh in an existing folder unless that loses nothing.

    That is only right when the folder holds no results yet (best model, training checkpoints, history rows, report
    files), no file this app does not write, and a ``config.json`` whose options equal ``config``'s: what an earlier
    start of the same command leaves when it stopped before training.

    Args:
        paths: the run folder (it may not exist: nothing to check then).
        config: the options of the run about to start.
        headline: the start of the refusal: why the folder cannot simply be continued.
        fix: the end of the refusal: what to do instead.

    Raises:
        CheckpointError: the message says what the folder holds, after ``headline``.
    """
    if not paths.root.exists():
        return
    contents = run_contents(paths)
    problems = [*contents.results, *(f"{name} (not written by this app)" for name in contents.foreign)]
    if contents.has_config and not problems:
        problems = _config_differences(paths, config)
    if problems:
        listing = "\n  ".join(problems)
        raise CheckpointError(f"{headline}\nand starting the run afresh there would overwrite or mix with what it "
                              f"holds:\n  {listing}\nnothing was changed; {fix}")


def resume_auto_headline(paths: RunPaths, skipped: Sequence[str]) -> str:
    """Why ``--resume auto`` found nothing to continue in ``paths`` (the start of its refusal)."""
    why = ("no training checkpoint could be used:\n  " + "\n  ".join(skipped)) if skipped else (
        f"it holds no training checkpoint ({CHECKPOINTS_DIR}/training_<iteration>.pt)")
    return f"--resume auto: run folder {paths.root} cannot be resumed: {why}"


def _config_differences(paths: RunPaths, config: TrainConfig) -> list[str]:
    try:
        saved = TrainConfig.from_dict(json.loads(paths.config.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as e:  # ConfigError and JSONDecodeError are ValueErrors
        return [f"{CONFIG_JSON} (unreadable: {e})"]
    return [f"{CONFIG_JSON} has other options: {d}" for d in config.result_differences(saved)]


def check_resumable(point: ResumePoint, config: TrainConfig, classes: tuple[str, ...],
                    normalization: Mapping[str, Sequence[float]] | None = None,
                    fingerprint: DataFingerprint | None = None) -> None:
    """Refuse a checkpoint of another kind of run, of other data, or of a run that has nothing left to do.

    Args:
        point: the checkpoint.
        config: this run's config.
        classes: this run's classes.
        normalization: this run's ``{"mean": [...], "std": [...]}``; they were computed from the training images, so
            a difference means that the training set changed (images added, removed, edited, or now unreadable).
        fingerprint: this run's data fingerprint; a different digest means that files were added, removed, moved to
            another class or changed (the run folder's file table says which).

    Raises:
        CheckpointError: the message lists every difference, or says why the run is complete.
    """
    differences = config.result_differences(point.config)
    saved_classes = tuple(point.checkpoint["classes"])
    if saved_classes != classes:
        differences.append(f"classes: {list(saved_classes)} -> {list(classes)}")
    saved = point.checkpoint["normalization"]
    if normalization is not None and not _same_constants(saved, normalization):
        differences.append(f"training-set mean and std (the training images changed): {dict(saved)} -> "
                           f"{dict(normalization)}")
    if fingerprint is not None and point.checkpoint[DATA_FINGERPRINT]["digest"] != fingerprint.digest:
        differences.append(_data_changes(point, fingerprint))
    if differences:
        lines = "\n  ".join(differences)
        raise CheckpointError(f"checkpoint {point.path} comes from an incompatible run; these differ "
                              f"(checkpoint -> now):\n  {lines}\nresume with the checkpoint's options and data, or "
                              "start a new run without --resume")
    saved_world = int(point.checkpoint["world_size"])
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


def _data_changes(point: ResumePoint, fingerprint: DataFingerprint) -> str:
    old = read_file_table(RunPaths(point.run_dir).data_files)
    if old is None or not fingerprint.count:
        then = point.checkpoint[DATA_FINGERPRINT]["files"]
        return f"the data: its files or values changed since the checkpoint ({then} files then, " \
               f"{fingerprint.count} now)"
    changes = describe_changes(old, fingerprint.files)
    return "the data files:\n    " + "\n    ".join(changes or ["their contents changed"])


def _same_constants(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]]) -> bool:
    # a tolerance: the digits' float reductions may round differently with another number of threads
    return all(len(a[k]) == len(b[k]) and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9)
                                              for x, y in zip(a[k], b[k])) for k in ("mean", "std"))


def restore(to_load: Mapping[str, Any], point: ResumePoint) -> None:
    """Load every object of ``to_load`` from the checkpoint (ignite's ``Checkpoint.load_objects``).

    Plain values (:class:`~ignite_app.runstate.checkpoint.Value`: classes, config...) are only written: they are read
    from the checkpoint where needed, never loaded back into an object.
    """
    to_load = {k: v for k, v in to_load.items() if not isinstance(v, Value)}
    missing = sorted(set(to_load) - set(point.checkpoint))
    if missing:
        raise CheckpointError(f"checkpoint {point.path} lacks {missing}; it was not written by this version of "
                              "the app's training checkpoint")
    Checkpoint.load_objects(to_load, point.checkpoint)
    log.info("resumed from %s (epoch %d, iteration %d)", point.path,
             point.iteration // point.checkpoint["trainer"]["epoch_length"], point.iteration)
