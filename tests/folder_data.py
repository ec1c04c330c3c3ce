"""Test helper: image folders generated from scikit-learn's digits (real, learnable 8x8 images saved as PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def digit_images(classes: tuple[int, ...], per_class: int) -> dict[int, list[np.ndarray]]:
    """The first ``per_class`` digits of each class, as uint8 8x8 arrays (0..255)."""
    images, labels = load_digits(return_X_y=True)
    out = {}
    for c in classes:
        pixels = images[labels == c][:per_class].reshape(-1, 8, 8)
        out[c] = [np.rint(p * 255 / 16).astype(np.uint8) for p in pixels]
    return out


def write_digit_folders(root: Path, classes: tuple[int, ...] = (0, 1, 2, 3), train: int = 30, val: int = 10,
                        flat: bool = False, names: dict[int, str] | None = None, rgb: bool = False) -> Path:
    """``root/train/<name>/*.png`` and ``root/val/<name>/*.png`` (or ``root/<name>/*.png`` when ``flat``)."""
    names = names or {c: f"digit{c}" for c in classes}
    for c, arrays in digit_images(classes, train + val).items():
        for i, array in enumerate(arrays):
            split = "" if flat else ("train" if i < train else "val")
            folder = root / split / names[c]
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(array)  # 2-D uint8: mode L
            (image.convert("RGB") if rgb else image).save(folder / f"{c}_{i:03d}.png")
    return root
