"""The run folder: where a run's outputs live, and its ``train.log``.

::

    runs/<run>/
        config.json          the resolved config
        label_map.txt        class names, line i = class i (the tutorial's format)
        train.log            the summary lines
        events.out.tfevents.*  TensorBoard
        checkpoints/         best_model.pt
"""

from __future__ import annotations

import logging
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
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def label_map(self) -> Path:
        return self.root / "label_map.txt"

    @property
    def log(self) -> Path:
        return self.root / "train.log"


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


def attach_log_file(paths: RunPaths) -> logging.Handler:
    """Append the app's log lines to ``train.log``; returns the handler so that it can be removed."""
    handler = logging.FileHandler(paths.log, encoding="utf-8")
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
