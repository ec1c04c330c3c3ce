"""Class names as folders and label maps spell them: the names that cannot be class names."""

from __future__ import annotations

import unicodedata


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
