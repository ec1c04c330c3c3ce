"""Checkpoint files: written durably through ignite's ``Checkpoint``, loaded safely, found again after a crash.

Two kinds of file live in ``runs/<run>/checkpoints/``:

- ``best_model.pt``: the model with the best validation accuracy
  (see :func:`ignite_app.handlers.attach_best_checkpoint`);
- ``training_<iteration>.pt``: everything needed to continue the run exactly (see
  :func:`attach_training_checkpoint`), written after every epoch and optionally every N iterations.
"""

from __future__ import annotations

import logging
import pickle
import random
import re
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
from ignite_app.fileio import atomic_write

log = logging.getLogger("ignite_app")

BEST_MODEL = "best_model.pt"
TRAINING_PREFIX = "training"
_TRAINING_NAME = re.compile(rf"^{TRAINING_PREFIX}_(\d+)\.pt$")


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
            "torch": torch_state,
            "torch_per_rank": (idist.all_gather(torch_state).view(idist.get_world_size(), -1)
                               if idist.get_world_size() > 1 else torch_state.unsqueeze(0)),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        random.setstate(_as_tuples(state["python"]))
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
        per_rank = state.get("torch_per_rank")
        rank = idist.get_rank()
        torch.set_rng_state(per_rank[rank].clone() if per_rank is not None and rank < len(per_rank)
                            else state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    # random.setstate wants tuples all the way down; a round trip through some loaders gives lists.
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def training_step(engine: Engine, event: Any = None) -> int:
    """The global step of a training checkpoint: the trainer's iteration."""
    return engine.state.iteration


def attach_training_checkpoint(trainer: Engine, to_save: Mapping[str, Any], out_dir: Path, keep_last: int,
                               every: int | None = None) -> Checkpoint:
    """Write ``training_<iteration>.pt`` after every epoch (and every ``every`` iterations); keep the newest ones.

    Attach it after every other epoch handler: the file must describe the epoch as finished, with its validation,
    scheduler step and best model already done. A mid-epoch save is never taken on an epoch's last iteration,
    where the epoch-end handlers have not yet run; the epoch-end save covers that point.
    """
    handler = Checkpoint(to_save, DurableSaver(out_dir), filename_prefix=TRAINING_PREFIX,
                         filename_pattern="{filename_prefix}_{global_step}.{ext}", n_saved=keep_last,
                         global_step_transform=training_step)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    if every is not None:
        def mid_epoch(engine: Engine, iteration: int) -> bool:
            return iteration % every == 0 and iteration % engine.state.epoch_length != 0

        trainer.add_event_handler(Events.ITERATION_COMPLETED(event_filter=mid_epoch), handler)
    return handler


def training_checkpoints(folder: Path) -> list[Path]:
    """The ``training_<iteration>.pt`` files of ``folder``, newest (highest iteration) first."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob(f"{TRAINING_PREFIX}_*.pt")
             if (m := _TRAINING_NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only, never code.

    Raises:
        CheckpointError: the file is missing, unreadable (truncated, corrupt) or carries pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Weights only" in str(e) or "Unsupported global" in str(e):
            raise UnsafeCheckpointError(f"checkpoint {path} refused: it holds pickled objects that would run code "
                                        "when loaded, not just tensors and plain values; only load checkpoints you "
                                        "trust, and only through code that inspects them") from None
        raise CheckpointError(f"checkpoint {path} is unreadable ({e}); it may be truncated or corrupt") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable ({reason}); it may be truncated or corrupt") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


def newest_loadable(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest training checkpoint of ``folder`` that loads; unreadable newer ones are skipped with a warning.

    A file that carries code is not skipped: :class:`UnsafeCheckpointError` stops everything, since it means
    someone other than this app wrote into the run folder.
    """
    for path in training_checkpoints(folder):
        try:
            return path, load_checkpoint(path)
        except UnsafeCheckpointError:
            raise
        except CheckpointError as e:
            log.warning("warning: %s; falling back to the previous checkpoint", e)
    return None
