"""Test helpers: image files cut from the photos that ship with scikit-learn (real detail, unlike noise)."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image


@cache
def sample_photo(name: str = "china.jpg") -> np.ndarray:
    """scikit-learn's ``china.jpg`` or ``flower.jpg`` (427 x 640 RGB), read without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "images" / name
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def photo(height: int, width: int, seed: int = 0, name: str = "china.jpg") -> np.ndarray:
    """A ``height`` x ``width`` RGB crop of a sample photo (resized first if it is larger than the photo)."""
    source = sample_photo(name)
    if height > source.shape[0] or width > source.shape[1]:
        scale = max(height / source.shape[0], width / source.shape[1])
        size = (int(np.ceil(source.shape[1] * scale)), int(np.ceil(source.shape[0] * scale)))
        source = np.asarray(Image.fromarray(source).resize(size, Image.Resampling.BICUBIC))
    rng = np.random.default_rng(seed)
    top = rng.integers(0, source.shape[0] - height + 1)
    left = rng.integers(0, source.shape[1] - width + 1)
    return np.ascontiguousarray(source[top:top + height, left:left + width])


def save(path: Path, image: np.ndarray | Image.Image, **options: object) -> Path:
    """Save ``image`` (format from the suffix); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path, **options)
    return path


def exif_orientation(value: int) -> Image.Exif:
    """EXIF data holding only the orientation tag (6: the camera was turned 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def photo_folder(root: Path, count: int = 12, size: tuple[int, int] = (30, 40)) -> tuple[list[str], list[int]]:
    """``root/c<k>/<i>.jpg``: ``count`` small photo crops in 3 classes; returns (paths, labels)."""
    paths, labels = [], []
    for i in range(count):
        path = save(root / f"c{i % 3}" / f"{i:02d}.jpg", photo(*size, seed=i))
        paths.append(str(path))
        labels.append(i % 3)
    return paths, labels
