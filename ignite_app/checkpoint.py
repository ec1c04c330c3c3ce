"""Checkpoint files: written durably through ignite's ``Checkpoint`` and loaded safely."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.handlers.checkpoint import BaseSaveHandler

from ignite_app.fileio import atomic_write

BEST_MODEL = "best_model.pt"


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
        if idist.get_rank() != self.save_on_rank:
            return
        atomic_write(self.dirname / filename, lambda f: torch.save(checkpoint, f))
        for name in self._pending_removal:
            if name != filename:
                (self.dirname / name).unlink(missing_ok=True)
        self._pending_removal.clear()

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


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file with ``weights_only=True``: plain tensors and containers only, never code."""
    return torch.load(path, map_location=map_location, weights_only=True)
