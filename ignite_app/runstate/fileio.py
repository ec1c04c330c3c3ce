"""Crash-safe file writes: a reader (or a resumed run) sees the old file or the new one, never half of either."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX keeps directory entries in the directory's own blocks)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)``: to a temporary file in the same folder, flushed, fsynced, renamed.

    A process killed at any moment leaves either the previous ``path`` or the complete new one, plus at worst a
    hidden ``.NAME.PID.tmp`` file that :func:`remove_stale_temporaries` clears.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write` for UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files that a killed writer left in ``folder``; returns what was removed."""
    stale = [p for p in Path(folder).glob(f".*{TMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def output_path_problem(path: Path, folder: bool) -> str | None:
    """Why ``path`` cannot be used as an output folder (``folder``) or file, or None when it can.

    The command lines ask this before they load any data or model, so that a path that cannot be written fails at
    once, by name, instead of with a traceback at the first write. Missing folders are fine (they are created):
    the nearest existing ancestor decides. The reason reads after the path: ``f"{path} {reason}"``.
    """
    target = Path(os.path.abspath(path))
    existing = target
    while not os.path.exists(existing):  # os.path.exists: a folder we may not search counts as missing
        existing = existing.parent  # "/" exists: the walk ends
    if existing != target:
        if not os.path.isdir(existing):
            return f"lies under {existing}, which is a file"
        return None if _writable(existing) else f"cannot be created: {existing} is not writable"
    if os.path.isdir(target) != folder:
        return "is a file, not a folder" if folder else "is a folder, not a file"
    if folder:
        return None if _writable(target) else "is not writable"
    # a file is replaced by a rename in its folder (atomic_write): the folder's permission is what counts
    return None if _writable(target.parent) else f"cannot be replaced: {target.parent} is not writable"


def _writable(folder: Path) -> bool:
    # creating an entry needs write and search permission on the folder
    return os.access(folder, os.W_OK | os.X_OK)
