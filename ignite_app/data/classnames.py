"""Class names as folders and label maps spell them: matched in one Unicode form, refused when unusable.

macOS writes file names decomposed (NFD: ``e`` + a combining accent), editors write text composed (NFC: ``é``):
the same name in other code points. Names are compared in NFC; files keep the names they have on disk.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable


def nfc(name: str) -> str:
    """``name`` in Unicode NFC, the form names are compared in."""
    return unicodedata.normalize("NFC", name)


def by_nfc(names: Iterable[str]) -> dict[str, str]:
    """``{NFC name: name}``: to match names in any Unicode form and still show (and open) them as they are."""
    return {nfc(name): name for name in names}


def same_in_nfc(names: Iterable[str]) -> tuple[int, int] | None:
    """The positions of the first two names that are equal in NFC, or None."""
    first_seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if nfc(name) in first_seen:
            return first_seen[nfc(name)], i
        first_seen[nfc(name)] = i
    return None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a class name (``"a blank name"``...), or None.

    A class name is one line of visible text: the run's label map holds one name per line, and reports, CSV files
    and TensorBoard tags show it. A tab, a line break or a ``\\r`` left by a
    script would break the label map, or hide in a message.
    """
    if not name.strip():
        return "a blank name"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "a control character in its name"
    return None
