"""Image files to uint8 tensors: Pillow decodes and resizes, numpy augments.

Training, evaluation and prediction share one path, so a model never sees pixels prepared differently from the
ones it was trained on:

1. decode the file with Pillow (EXIF rotation applied), convert it to the run's channels (``L`` or ``RGB``) and
   resize it to SIZE x SIZE (:func:`load_image`, uint8); with a pretrained network's configuration
   (``--normalization pretrained``), the short side is resized to SIZE / crop_pct with its interpolation and the
   centre SIZE x SIZE cropped, as the network's own evaluation transform does;
2. training only: a random crop from the image padded by SIZE/8 pixels (reflected) and a horizontal flip, both
   derived from a per-sample seed, never from a worker's random state (:func:`augment`);
3. the model's preprocessing (:class:`ignite_app.models.Preprocess`) scales the uint8 pixels to [0, 1] and
   normalises them with the training set's per-channel mean and std, which are part of the saved model.

The mean and std are computed from exact integer sums of the resized uint8 pixels (:class:`PixelStats`), so they
do not depend on the order the images were read in, on the number of worker processes or on the machine.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor


_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16-bit (or 32-bit int) grey
# What Pillow raises for a file it cannot decode: unknown or truncated data (OSError, UnidentifiedImageError),
# broken headers in some plugins (SyntaxError, ValueError, struct errors), images too large to be safe.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, Image.DecompressionBombError)
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
              "nearest": Image.Resampling.NEAREST}


class UnreadableImage(Exception):
    """An image file that cannot be decoded; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def load_image(path: str | Path, channels: int, size: int, crop_pct: float | None = None,
               interpolation: str = "bilinear") -> Tensor:
    """Decode ``path`` into a uint8 tensor (channels, size, size).

    Args:
        crop_pct: None resizes the whole image to size x size; otherwise the short side is resized to
            ``round(size / crop_pct)`` and the centre size x size cropped (torchvision's and timm's evaluation).
        interpolation: bilinear, bicubic or nearest.

    Raises:
        UnreadableImage: the file is missing, unreadable, truncated or not an image Pillow can decode.
    """
    try:
        with Image.open(path) as opened:
            _warn_if_large(path, opened.size)
            image = ImageOps.exif_transpose(opened)  # phone photos: the orientation the camera recorded
            image = _resize(_convert(image, channels), size, crop_pct, RESAMPLING[interpolation])
            array = np.asarray(image, dtype=np.uint8)
    except _DECODE_ERRORS as e:
        raise UnreadableImage(path, str(e) or type(e).__name__) from None
    tensor = torch.from_numpy(array.copy())  # copy: the array may share Pillow's read-only buffer
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()  # (C, H, W)


def resize_short_side(size: int, crop_pct: float) -> int:
    """The short side an image is resized to before its centre size x size crop: ``floor(size / crop_pct)``, as
    timm's evaluation transform (and 256 for torchvision's 224 / 0.875; the epsilon absorbs 224 / (224 / 232))."""
    return max(size, math.floor(size / crop_pct + 1e-6))


def _resize(image: Image.Image, size: int, crop_pct: float | None, resample: Image.Resampling) -> Image.Image:
    if crop_pct is None:
        return image.resize((size, size), resample)
    # torchvision's Resize(short) then CenterCrop(size), on the PIL image: the same sizes, offsets and pixels
    width, height = image.size
    short = resize_short_side(size, crop_pct)
    long = int(short * max(width, height) / min(width, height))
    width, height = (long, short) if width > height else (short, long)
    image = image.resize((width, height), resample)
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _warn_if_large(path: str | Path, size: tuple[int, int]) -> None:
    """Name the file that Pillow's DecompressionBombWarning is about: Pillow's own message does not.

    Pillow has warned by now (over Image.MAX_IMAGE_PIXELS; over twice that, open raised). Its warning is not caught
    and re-worded: ``warnings.catch_warnings`` swaps process-wide state, and images are loaded on the main thread
    while the report thread draws.
    """
    limit = Image.MAX_IMAGE_PIXELS
    pixels = max(1, size[0]) * max(1, size[1])  # as Pillow counts them
    if limit is not None and pixels > limit:
        warnings.warn(f"{path} has {pixels} pixels, more than Pillow's limit of {limit} (the "
                      f"DecompressionBombWarning is about this file); it is decoded, but above {2 * limit} pixels "
                      "an image is refused: resize it", Image.DecompressionBombWarning, stacklevel=3)


def _convert(image: Image.Image, channels: int) -> Image.Image:
    if image.mode in _HIGH_DEPTH_MODES or image.mode == "F":
        # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them (most pixels would turn
        # white): scale 0..65535 to 0..255 here. Float images are taken as 0..255 and clipped.
        array = np.asarray(image, dtype=np.float64)
        array = array / 257.0 if image.mode in _HIGH_DEPTH_MODES else array
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))  # 2-D uint8: mode L
    if channels == 1:
        return image.convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow warns when a palette with transparency goes straight to RGB
    return image.convert("RGB")  # the alpha channel, if any, is dropped


def augment(image: np.ndarray, seed: int) -> np.ndarray:
    """A random crop of ``image`` (C, H, W) padded by min(H, W)/8 pixels on each side (reflected), then a coin-flip
    mirror; a pure function of ``seed``.

    The padded image is never built: one gather with reflected row and column indices reads the crop directly.
    Done in numpy from the seed's own bits, it costs a few microseconds, where the same steps as torch operations on
    a small image cost about a millisecond, as much as decoding it.
    """
    h, w = image.shape[-2:]
    pad = max(1, min(h, w) // 8)
    span = 2 * pad + 1
    bits = _mix(seed)
    top, left, flip = bits % span - pad, (bits // span) % span - pad, (bits >> 32) & 1
    rows = _reflect(np.arange(h) + top, h)
    cols = _reflect(np.arange(w) + left, w)
    return image[:, rows[:, None], cols[::-1] if flip else cols]


def _mix(seed: int) -> int:
    # splitmix64's finaliser: nearby seeds (0, 1, 2...) still give unrelated offsets and flips
    z = (seed + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Indices outside 0..n-1 mirrored at the edges without repeating them (torch's and numpy's 'reflect')."""
    index = np.abs(index)
    return np.where(index >= n, 2 * (n - 1) - index, index)


@dataclass(frozen=True)
class ImageTransform:
    """Decode, resize, (augment): what a folder dataset does with each file. The result stays uint8: the model's
    preprocessing converts and normalises it on the device.

    Args:
        size: images become size x size.
        channels: 1 (grey) or 3 (RGB).
        augment: random crop and flip for samples fetched with a seed (training); never without one.
        crop_pct: (a pretrained network's configuration) resize the short side to size / crop_pct, then crop the
            centre; None: resize the whole image to size x size.
        interpolation: how images are resized: bilinear, bicubic or nearest.
    """

    size: int
    channels: int
    augment: bool = False
    crop_pct: float | None = None
    interpolation: str = "bilinear"

    def load(self, path: str | Path) -> Tensor:
        """The file as a uint8 (C, size, size) tensor; raises :class:`UnreadableImage`."""
        return load_image(path, self.channels, self.size, self.crop_pct, self.interpolation)

    def __call__(self, image: Tensor, seed: int | None = None) -> Tensor:
        """A uint8 image (C, H, W), augmented when ``augment`` and ``seed`` say so."""
        if not (self.augment and seed is not None):
            return image
        # numpy: far less per-call overhead than torch on one small image
        return torch.from_numpy(np.ascontiguousarray(augment(image.numpy(), seed)))


@dataclass
class PixelStats:
    """Exact per-channel sums of uint8 pixel values, turned into the mean and std of the images on [0, 1]."""

    channels: int
    count: int = 0  # pixels per channel
    sums: list[int] = field(default_factory=list)
    squares: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sums = self.sums or [0] * self.channels
        self.squares = self.squares or [0] * self.channels

    @staticmethod
    def of(image: Tensor) -> tuple[int, list[int], list[int]]:
        """``(pixels per channel, per-channel sums, per-channel sums of squares)`` of a uint8 (C, H, W) image."""
        values = image.reshape(image.shape[0], -1).to(torch.int64)  # 255^2 x 2^40 pixels still fits in int64
        return values.shape[1], values.sum(dim=1).tolist(), (values * values).sum(dim=1).tolist()

    def add(self, count: int, sums: Sequence[int], squares: Sequence[int]) -> None:
        """Add one image's :meth:`of` values."""
        self.count += count
        self.sums = [a + b for a, b in zip(self.sums, sums)]
        self.squares = [a + b for a, b in zip(self.squares, squares)]

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and (sample) standard deviation on the [0, 1] scale; a constant channel gets std 1."""
        n = self.count
        if n < 2:
            raise ValueError(f"the mean and std need at least 2 pixels per channel, got {n}")
        mean = tuple(s / n / 255 for s in self.sums)
        # n*Q - S^2 in Python integers: exact, so no cancellation error even for millions of pixels
        variance = [(n * q - s * s) / (n * (n - 1)) for s, q in zip(self.sums, self.squares)]
        std = tuple(math.sqrt(v) / 255 if v > 0 else 1.0 for v in variance)
        return mean, std
