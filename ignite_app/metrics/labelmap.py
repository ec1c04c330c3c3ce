"""Label-map files, the tutorial's format: UTF-8 text, one class name per line, line ``i`` is class ``i``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ignite_app.runstate.fileio import atomic_write_text

__all__ = ["check_class_names", "read_label_map", "write_label_map"]


def check_class_names(names: Sequence[str], where: str = "class_names") -> tuple[str, ...]:
    """Return `names` as a tuple, or raise if a name is not a usable, unique, single-line string."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TypeError(
            f"{where} must be a sequence of class names such as ['cat', 'dog'], got {type(names).__name__} "
            f"{names!r:.80}; hint: read a label-map file with read_label_map(path)"
        )
    if len(names) == 0:
        raise ValueError(f"{where} is empty: expected one name per class (at least one)")
    first_seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"{where}[{i}] must be a str, got {type(name).__name__} {name!r}")
        if not name.strip():
            raise ValueError(f"{where}[{i}] is blank ({name!r}): every class needs a visible name")
        if "\n" in name or "\r" in name:
            raise ValueError(f"{where}[{i}] = {name!r} contains a line break; a label map holds one name per line")
        if name in first_seen:
            raise ValueError(f"{where}[{i}] = {name!r} repeats {where}[{first_seen[name]}]: names must be unique")
        first_seen[name] = i
    return tuple(names)


def read_label_map(path: str | os.PathLike[str]) -> list[str]:
    """Read a label map: UTF-8 text, one class name per line, line ``i`` (counting from 0) is class ``i``.

    Args:
        path: the label-map file. A UTF-8 byte-order mark and Windows line endings are accepted.

    Returns:
        The class names in class-index order.

    Raises:
        ValueError: the file is empty, or a line is blank or repeats an earlier name (the message gives the
            1-based line number, as an editor shows it).
    """
    text = Path(path).read_text(encoding="utf-8-sig")
    # Split on "\n" only: str.splitlines() would also split on rare separators that may be part of a name.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another one
    if not lines:
        raise ValueError(f"label map {str(path)!r} is empty: expected one class name per line")
    first_seen: dict[str, int] = {}
    names = []
    for number, line in enumerate(lines, start=1):
        name = line.removesuffix("\r")
        if not name.strip():
            raise ValueError(f"label map {str(path)!r}: line {number} (class {number - 1}) is blank")
        if name in first_seen:
            raise ValueError(
                f"label map {str(path)!r}: line {number} repeats {name!r} from line {first_seen[name]}; "
                "class names must be unique"
            )
        first_seen[name] = number
        names.append(name)
    return names


def write_label_map(path: str | os.PathLike[str], names: Sequence[str]) -> None:
    """Write `names` as a label map that `read_label_map` reads back unchanged.

    The file is replaced atomically (:func:`ignite_app.runstate.fileio.atomic_write_text`): a reader never sees half a
    label map.

    Args:
        path: the file to create or replace.
        names: class names in class-index order; non-empty, unique, no blank names, no line breaks.
    """
    names = check_class_names(names, where="names")
    atomic_write_text(Path(path), "\n".join(names) + "\n")
