"""The image files the app reads: their extensions (no heavy imports, for the command lines' ``--help``)."""

from __future__ import annotations

from pathlib import Path

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has one of the :data:`IMAGE_EXTENSIONS` (any case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS
