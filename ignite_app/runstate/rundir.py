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
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ignite_app.errors import UsageError

log = logging.getLogger("ignite_app")

# The names of the run folder's files: defined here once, for the writers and for the checks of an existing folder.
CONFIG_JSON = "config.json"
LABEL_MAP_TXT = "label_map.txt"
TRAIN_LOG = "train.log"
CHECKPOINTS_DIR = "checkpoints"
REPORTS_DIR = "reports"
BEST_MODEL = "best_model.pt"
TRAINING_PREFIX = "training"
CONFUSION_MATRIX_CSV = "confusion_matrix.csv"
CLASSIFICATION_REPORT_CSV = "classification_report.csv"
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
HISTORY_CSV = "history.csv"
RELIABILITY_CSV = "reliability.csv"  # the best epoch's calibration table
REPORT_FILES = (CONFUSION_MATRIX_CSV, CLASSIFICATION_REPORT_CSV, CONFUSION_MATRIX_PNG, RELIABILITY_CSV)
LOCK_FILE = ".lock"
DATA_FILES = "data_files.csv.gz"  # the table of the data's files (see ignite_app.runstate.fingerprint)
# Other files the app writes at the top of a run folder (TensorBoard's, other ranks' logs, temporary files).
_APP_TOP_FILES = re.compile(r"^(events\.out\.tfevents\..*|train\.rank\d+\.log|\..*\.tmp)$")
_TRAINING_NAME = re.compile(rf"^{TRAINING_PREFIX}_\d+\.pt$")
_TEMPORARY = re.compile(r"^\..*\.tmp$")


@dataclass(frozen=True)
class RunPaths:
    """The files and folders of one run."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def best_model(self) -> Path:
        return self.checkpoints / BEST_MODEL

    @property
    def reports(self) -> Path:
        return self.root / REPORTS_DIR

    @property
    def history(self) -> Path:
        return self.reports / HISTORY_CSV

    @property
    def config(self) -> Path:
        return self.root / CONFIG_JSON

    @property
    def label_map(self) -> Path:
        return self.root / LABEL_MAP_TXT

    @property
    def data_files(self) -> Path:
        return self.root / DATA_FILES

    @property
    def log(self) -> Path:
        return self.root / TRAIN_LOG

    def rank_log(self, rank: int) -> Path:
        """``train.log`` for rank 0, ``train.rank<k>.log`` for the other processes."""
        return self.log if rank == 0 else self.root / f"train.rank{rank}.log"


@dataclass
class RunContents:
    """What an existing run folder holds, as relative paths: results, and files this app does not write there."""

    results: list[str] = field(default_factory=list)  # best model, training checkpoints, history rows, reports
    foreign: list[str] = field(default_factory=list)
    has_config: bool = False


def run_contents(paths: RunPaths) -> RunContents:
    """Sort the files of an existing run folder into results, the app's other files and foreign files.

    A folder without results holds only what a start writes before training (config, label map, logs, empty
    TensorBoard files): such a folder can be started again without losing anything.
    """
    contents = RunContents()
    if not paths.root.is_dir():
        return contents
    for entry in sorted(paths.root.iterdir()):
        name = entry.name
        if name == CONFIG_JSON:
            contents.has_config = True
        elif entry.is_dir() and name == CHECKPOINTS_DIR:
            _sort_checkpoints(entry, contents)
        elif entry.is_dir() and name == REPORTS_DIR:
            _sort_reports(entry, contents)
        elif not (entry.is_file() and (name in (LABEL_MAP_TXT, TRAIN_LOG, LOCK_FILE, DATA_FILES)
                                       or _APP_TOP_FILES.match(name))):
            contents.foreign.append(name + ("/" if entry.is_dir() else ""))
    return contents


def _sort_checkpoints(folder: Path, contents: RunContents) -> None:
    for entry in sorted(folder.iterdir()):
        where = f"{CHECKPOINTS_DIR}/{entry.name}"
        if entry.is_file() and (entry.name == BEST_MODEL or _TRAINING_NAME.match(entry.name)):
            contents.results.append(where)
        elif not (entry.is_file() and _TEMPORARY.match(entry.name)):
            contents.foreign.append(where)


def _sort_reports(folder: Path, contents: RunContents) -> None:
    for entry in sorted(folder.iterdir()):
        where = f"{REPORTS_DIR}/{entry.name}"
        if entry.is_file() and entry.name == HISTORY_CSV:
            with open(entry, encoding="utf-8", errors="replace") as f:
                rows = sum(1 for line in f if line.strip()) - 1  # after the header
            if rows > 0:
                contents.results.append(f"{where} ({rows} epoch{'s' if rows > 1 else ''})")
        elif entry.is_file() and entry.name in REPORT_FILES:
            contents.results.append(where)
        elif not (entry.is_file() and _TEMPORARY.match(entry.name)):
            contents.foreign.append(where)


def default_run_name() -> str:
    """The start time, sortable: ``20261127-154500``."""
    return time.strftime("%Y%m%d-%H%M%S")


def create_run_dir(output_dir: Path, run_name: str | None,
                   check_existing: Callable[[RunPaths], None] | None = None) -> RunPaths:
    """Create a new, empty run folder; an existing one is never overwritten.

    Args:
        output_dir: the folder of run folders (created if needed).
        run_name: the folder's name; default: the start time.
        check_existing: called with a named folder that exists already; it raises when the folder may not be used,
            and returns when starting there loses nothing (see :func:`ignite_app.runstate.resume.check_restartable`).
            Without it, an existing folder is always refused.

    Raises:
        UsageError: ``run_name`` names a folder that exists (and ``check_existing`` refused it).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    if run_name is not None:
        root = output_dir / run_name
        try:
            root.mkdir()  # atomic: two runs cannot both get the same folder (the run lock settles a reuse)
        except FileExistsError:
            if check_existing is None:
                raise UsageError(f"--run-name {run_name!r}: the run folder {root} already exists and is never "
                                 "overwritten; choose another --run-name") from None
            check_existing(RunPaths(root))
            log.info("run folder %s exists and holds no results yet (an earlier start stopped before training): "
                     "starting the run in it", root)
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


def open_run_dir(output_dir: Path, run_name: str | None, existing_ok: bool,
                 check_existing: Callable[[RunPaths], None] | None = None) -> RunPaths:
    """The run folder: a new one (see :func:`create_run_dir`), or (``existing_ok``, when resuming) the named one,
    created if missing."""
    if not existing_ok:
        return create_run_dir(output_dir, run_name, check_existing)
    root = output_dir / str(run_name)
    root.mkdir(parents=True, exist_ok=True)
    return RunPaths(root)


class RunLock:
    """An exclusive lock on a run folder for the life of the run: two processes never write the same run.

    ``flock`` locks belong to the open file: the kernel drops them when the process dies, even by ``kill -9``, so
    a crashed run never leaves a stale lock behind.
    """

    def __init__(self, paths: RunPaths) -> None:
        self.path = paths.root / LOCK_FILE
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
