"""The run folder: where a run's outputs live, and its ``train.log``.

::

    runs/<run>/
        config.json          the resolved config
        label_map.txt        class names, line i = class i (the tutorial's format)
        train.log            the summary lines
        events.out.tfevents.*  TensorBoard
        checkpoints/         best_model.pt, training_<iteration>.pt
        reports/             the best epoch's confusion_matrix.csv/.png and classification_report.csv; history.csv
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ignite_app.errors import UsageError

log = logging.getLogger("ignite_app")


@dataclass(frozen=True)
class RunPaths:
    """The files and folders of one run."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_model(self) -> Path:
        return self.checkpoints / "best_model.pt"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def label_map(self) -> Path:
        return self.root / "label_map.txt"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    def rank_log(self, rank: int) -> Path:
        """``train.log`` for rank 0, ``train.rank<k>.log`` for the other processes."""
        return self.log if rank == 0 else self.root / f"train.rank{rank}.log"


def default_run_name() -> str:
    """The start time, sortable: ``20261127-154500``."""
    return time.strftime("%Y%m%d-%H%M%S")


def create_run_dir(output_dir: Path, run_name: str | None) -> RunPaths:
    """Create a new, empty run folder; an existing one is never reused (nothing in it may be overwritten).

    Raises:
        UsageError: ``run_name`` names a folder that exists.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    if run_name is not None:
        root = output_dir / run_name
        try:
            root.mkdir()  # atomic: two runs cannot both get the same folder
        except FileExistsError:
            raise UsageError(f"--run-name {run_name!r}: the run folder {root} already exists and is never "
                             "overwritten; choose another --run-name") from None
        return RunPaths(root)
    base = default_run_name()
    for n in range(1, 1000):  # two runs started in the same second get -2, -3, ...
        root = output_dir / (base if n == 1 else f"{base}-{n}")
        try:
            root.mkdir()
            return RunPaths(root)
        except FileExistsError:
            continue
    raise UsageError(f"could not create a run folder named after {base} in {output_dir}; pass --run-name")


def open_run_dir(output_dir: Path, run_name: str | None, existing_ok: bool) -> RunPaths:
    """The run folder: a new one, or (``existing_ok``, when resuming) the named one, created if missing."""
    if not existing_ok:
        return create_run_dir(output_dir, run_name)
    root = output_dir / str(run_name)
    root.mkdir(parents=True, exist_ok=True)
    return RunPaths(root)


class RunLock:
    """An exclusive lock on a run folder for the life of the run: two processes never write the same run.

    ``flock`` locks belong to the open file: the kernel drops them when the process dies, even by ``kill -9``, so
    a crashed run never leaves a stale lock behind.
    """

    def __init__(self, paths: RunPaths) -> None:
        self.path = paths.root / ".lock"
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise UsageError(f"run folder {paths.root} is in use by another training process (pid {holder}); "
                             "wait for it to finish or choose another --run-name") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def attach_log_file(paths: RunPaths) -> logging.Handler:
    """Append this process's log lines to ``train.log`` (``train.rank<k>.log`` on rank k > 0).

    Returns the handler so that it can be removed.
    """
    import ignite.distributed as idist

    handler = logging.FileHandler(paths.rank_log(idist.get_rank()), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def enable_console_logging() -> logging.Handler:
    """Print the app's log lines (epoch summaries, final report) on standard output."""
    import sys

    for handler in log.handlers:
        if getattr(handler, "_ignite_app_console", False):
            return handler
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._ignite_app_console = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler
