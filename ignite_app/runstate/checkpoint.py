"""Checkpoint files: written durably through ignite's ``Checkpoint``, loaded safely, found again after a crash.

Two kinds of file live in ``runs/<run>/checkpoints/``:

- ``best_model.pt``: the model with the best validation accuracy
  (see :func:`ignite_app.handlers.attach_best_checkpoint`);
- ``training_<iteration>.pt``: everything needed to continue the run exactly (see
  :func:`attach_training_checkpoint`), written after every epoch and optionally every N iterations.
"""

from __future__ import annotations

import codecs
import logging
import pickle
import random
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from ignite.handlers.checkpoint import BaseSaveHandler

from ignite_app.errors import UsageError
from ignite_app.recipe.accumulation import at_step_boundary
from ignite_app.runstate.fileio import atomic_write
from ignite_app.runstate.jobs import BackgroundJobs
from ignite_app.runstate.rundir import TRAINING_PREFIX

log = logging.getLogger("ignite_app")

_TRAINING_NAME = re.compile(rf"^{TRAINING_PREFIX}_(\d+)\.pt$")
_GLOBAL = re.compile(r"(GLOBAL [\w.]+)", re.IGNORECASE)  # in torch's refusal of a pickled function or class


class CheckpointError(UsageError):
    """A checkpoint cannot be used: unreadable, unsafe, or from an incompatible run."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint carries pickled objects that would run code if loaded without ``weights_only``."""


class DurableSaver(BaseSaveHandler):
    """ignite's ``DiskSaver``, made crash-safe.

    Two gaps of ``DiskSaver`` are closed here: its atomic mode renames without an ``fsync`` (a power cut can leave
    an empty file under the final name), and ``Checkpoint`` asks it to delete the file being replaced *before* it
    writes the new one, which for a stable name such as ``best_model.pt`` leaves a window with no best model on
    disk. Removals are therefore deferred until the next file is safely in place, and a removal of the very name
    just written is dropped: ``os.replace`` already swapped it.
    """

    def __init__(self, dirname: Path, save_on_rank: int = 0) -> None:
        self.dirname = Path(dirname)
        self.save_on_rank = save_on_rank
        self._pending_removal: list[str] = []
        if idist.get_rank() == save_on_rank:
            self.dirname.mkdir(parents=True, exist_ok=True)

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if idist.get_rank() == self.save_on_rank:
            atomic_write(self.dirname / filename, lambda f: torch.save(checkpoint, f))
            for name in self._pending_removal:
                if name != filename:
                    (self.dirname / name).unlink(missing_ok=True)
            self._pending_removal.clear()
        if idist.get_world_size() > 1:
            idist.barrier()  # no rank runs ahead (or exits) before the file is in place

    def remove(self, filename: str) -> None:
        if idist.get_rank() == self.save_on_rank:
            self._pending_removal.append(filename)


class TrainingSaver(BaseSaveHandler):
    """Writes training checkpoints on a background thread and keeps the newest ``keep_last`` files of the folder.

    Serialising and fsyncing a checkpoint costs far more than copying its tensors, so the training loop only takes a
    snapshot (:func:`snapshot`: every tensor copied to the CPU; the collective parts, such as the RNG gather, were
    done by ignite's ``Checkpoint`` on every rank before this is called) and a single writer thread writes the files
    in order, each one atomically and durably. ``best_model.pt`` is still written synchronously by its own saver, so
    it is always on disk before a training checkpoint that refers to it. Call :meth:`wait` before anything that needs
    the files (a signal stop reports it saved, the end of the run); a failed write is raised there, or at the next
    save.

    The folder is pruned after each new file is durable, so the checkpoint a run resumed from is only deleted once
    ``keep_last`` newer ones exist. Files of a higher iteration than the one just written (left by a process that
    was killed after them, and that this run will write again) are neither counted nor deleted here.

    Args:
        dirname: the checkpoints folder.
        keep_last: how many training checkpoints to keep.
        save_on_rank: the process that writes.
        synchronous: write in the caller's thread (measurements, debugging).
    """

    def __init__(self, dirname: Path, keep_last: int, save_on_rank: int = 0, synchronous: bool = False) -> None:
        self.dirname, self.keep_last, self.save_on_rank = Path(dirname), keep_last, save_on_rank
        self._jobs: BackgroundJobs | None = None
        if idist.get_rank() == save_on_rank:
            self.dirname.mkdir(parents=True, exist_ok=True)
            self._jobs = BackgroundJobs(synchronous=synchronous, name="checkpoints")

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if self._jobs is not None:
            self._jobs.submit(f"writing checkpoint {self.dirname / filename}", self._write, snapshot(checkpoint),
                              filename)

    def _write(self, checkpoint: Mapping, filename: str) -> None:
        atomic_write(self.dirname / filename, lambda f: torch.save(checkpoint, f))
        written = checkpoint_iteration(Path(filename))
        older = [p for p in training_checkpoints(self.dirname) if checkpoint_iteration(p) <= written]
        for path in older[self.keep_last:]:
            path.unlink(missing_ok=True)

    def wait(self) -> None:
        """Wait until every checkpoint submitted so far is on disk; raise :class:`JobError` if a write failed."""
        if self._jobs is not None:
            self._jobs.wait()

    def close(self) -> None:
        """:meth:`wait`, then stop the writer thread (idempotent)."""
        if self._jobs is not None:
            self._jobs.close()

    def remove(self, filename: str) -> None:  # n_saved=None: ignite never asks; pruning is done after each write
        pass


def snapshot(value: Any) -> Any:
    """A copy of a checkpoint that the training loop can no longer change: every tensor copied to the CPU.

    ``state_dict()`` returns references to the live parameters and optimizer buffers; a file written later from them
    would hold the values of a later step.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, Mapping):
        return type(value)((k, snapshot(v)) for k, v in value.items()) if type(value) is not dict else {
            k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(snapshot(v) for v in value)
    return value  # numbers, strings, None: immutable


class Value:
    """Adapter that lets ignite's ``Checkpoint`` store a plain value: ``state_dict()`` returns ``get()``."""

    def __init__(self, get: Callable[[], Any]) -> None:
        self.get = get

    def state_dict(self) -> Any:
        return self.get()

    def load_state_dict(self, state: Any) -> None:  # values are read back from the file, never pushed here
        pass


class RNGState:
    """The random number generators (python, numpy, torch, CUDA) as a checkpointable object.

    Restoring them makes the dropout masks after a resume those of the uninterrupted run. Each process draws its
    own masks, so the torch generator of every rank is gathered into the file (a collective call). numpy's state is
    stored as a tensor so that the file still loads with ``weights_only=True``.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        torch_state = torch.get_rng_state()
        return {
            "python": random.getstate(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "torch_per_rank": (idist.all_gather(torch_state).view(idist.get_world_size(), -1)
                               if idist.get_world_size() > 1 else torch_state.unsqueeze(0)),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        random.setstate(_as_tuples(state["python"]))
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
        torch.set_rng_state(state["torch_per_rank"][idist.get_rank()].clone())
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    # random.setstate wants tuples all the way down; a round trip through some loaders gives lists.
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def training_step(engine: Engine, event: Any = None) -> int:
    """The global step of a training checkpoint: the trainer's iteration."""
    return engine.state.iteration


def attach_training_checkpoint(trainer: Engine, to_save: Mapping[str, Any], out_dir: Path, keep_last: int,
                               every: int | None = None, synchronous: bool = False) -> Checkpoint:
    """Write ``training_<iteration>.pt`` after every epoch (and every ``every`` iterations); keep the newest ones.

    Attach it after every other epoch handler: the file must describe the epoch as finished, with its validation,
    scheduler step and best model already done. A mid-epoch save is never taken on an epoch's last iteration,
    where the epoch-end handlers have not yet run; the epoch-end save covers that point. With gradient accumulation
    a save that falls due inside a group of batches is written after the group's last batch (the accumulated gradients
    are not saved; see :mod:`ignite_app.recipe.accumulation`).
    """
    # n_saved=None: ignite's Checkpoint only knows the files its own process wrote, so the saver keeps the newest
    # keep_last of the whole run's folder instead, those of earlier (resumed) processes included.
    handler = Checkpoint(to_save, TrainingSaver(out_dir, keep_last, synchronous=synchronous),
                         filename_prefix=TRAINING_PREFIX,
                         filename_pattern="{filename_prefix}_{global_step}.{ext}", n_saved=None,
                         global_step_transform=training_step)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    if every is not None:
        due = [False]  # a save fell due inside the current group of batches

        def mid_epoch(engine: Engine, iteration: int) -> bool:
            due[0] = due[0] or iteration % every == 0
            if iteration % engine.state.epoch_length == 0:  # the epoch-end save covers it
                due[0] = False
            elif due[0] and at_step_boundary(engine):
                due[0] = False
                return True
            return False

        trainer.add_event_handler(Events.ITERATION_COMPLETED(event_filter=mid_epoch), handler)
    return handler


def checkpoint_iteration(path: Path) -> int:
    """The iteration in a ``training_<iteration>.pt`` name (-1 for any other name)."""
    m = _TRAINING_NAME.match(path.name)
    return int(m.group(1)) if m else -1


def training_checkpoints(folder: Path) -> list[Path]:
    """The ``training_<iteration>.pt`` files of ``folder``, newest (highest iteration) first."""
    found = [p for p in Path(folder).glob(f"{TRAINING_PREFIX}_*.pt") if _TRAINING_NAME.match(p.name)]
    return sorted(found, key=checkpoint_iteration, reverse=True)


# What a file that is not a checkpoint usually turns out to be, by its first bytes.
_LOOKALIKES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"version https://git-lfs", "a git-LFS pointer: the real file was never downloaded (run git lfs pull)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
)


def not_a_checkpoint(head: bytes) -> str | None:
    """What a file starting with ``head`` is, when it cannot be a file written by ``torch.save``; else ``None``.

    ``torch.save`` writes a zip archive (``PK``) or, in its legacy format, a pickle (``\\x80``).
    """
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return None
    if not head:
        return "an empty file"
    for magic, what in _LOOKALIKES:
        if head.startswith(magic):
            return what
    if len(head) >= 10 and head[8:10] == b'{"':
        return "a safetensors file (weights only: use it with --weights, not as a checkpoint)"
    try:  # incremental: a multi-byte character cut off at the end of `head` is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        text = ""
    if not text or not text.replace("\n", "").replace("\r", "").replace("\t", "").isprintable():
        return "binary data of an unknown kind"
    return "JSON text" if text.lstrip().startswith(("{", "[")) else "a text file"


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only, never code.

    Raises:
        CheckpointError: the message says what the file is not: missing, not a PyTorch checkpoint at all (with
            what it looks like), truncated or corrupt, or not a dict.
        UnsafeCheckpointError: the file carries pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists() else
                              f"checkpoint {path} is a folder, not a file")
    with open(path, "rb") as f:
        lookalike = not_a_checkpoint(f.read(64))
    if lookalike is not None:
        raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint: it is {lookalike}")
    try:
        with warnings.catch_warnings():  # a pickle of another protocol is refused below; torch's warning adds nothing
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = _GLOBAL.search(str(e))
        if found is not None:  # the safe unpickler met a reference to a Python function or class
            raise UnsafeCheckpointError(f"checkpoint {path} refused: it carries code ({found.group(1)}: pickled "
                                        "objects that would run when loaded, not just tensors and plain values); "
                                        "only load checkpoints you trust, and only through code that inspects "
                                        "them") from None
        if "Weights only" in str(e):
            raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint: it is a Python pickle that "
                                  "torch.save did not write") from None
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({e})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} is not a checkpoint of this app: it holds a "
                              f"{type(checkpoint).__name__}, not a dict of named entries")
    return checkpoint


def is_training_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint holds a trainer's state to resume from (``best_model.pt`` does not)."""
    trainer = checkpoint.get("trainer")
    return isinstance(trainer, Mapping) and "iteration" in trainer and "epoch_length" in trainer


def newest_loadable(folder: Path) -> tuple[tuple[Path, dict[str, Any]] | None, list[str]]:
    """The newest training checkpoint of ``folder`` that loads, and why each newer one was skipped.

    Any newer file that cannot be used (truncated, not a checkpoint, carrying code, without a trainer state) is
    skipped with a warning that gives its reason; ``None`` when no file is usable.
    """
    skipped: list[str] = []
    for path in training_checkpoints(folder):
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as e:  # an UnsafeCheckpointError too: it is never loaded, only passed over
            reason = str(e)
        else:
            if is_training_checkpoint(checkpoint):
                return (path, checkpoint), skipped
            reason = f"checkpoint {path} holds no trainer state (it is not a training checkpoint)"
        skipped.append(reason)
        log.warning("warning: %s; falling back to the previous checkpoint", reason)
    return None, skipped
