"""Image files to uint8 tensors (C, H, W), by the fastest path that gives the right pixels.

The file is read once; Pillow parses its header (about 30 us) and the bytes go to one of three decoders:

- **JPEG in RGB or grey** (most photos): ``torchvision.io.decode_jpeg``, EXIF orientation applied. It is Pillow's
  own libjpeg-turbo without Pillow's copies: about 0.6 ms for a 500x375 photo where Pillow takes 0.9 ms. Its
  pixels are Pillow's: measured identical (0 levels) on 4:4:4, 4:2:2, 4:2:0 and progressive files with this
  build; :data:`JPEG_TOLERANCE` allows for a different libjpeg build.
- **JPEG much larger than needed**: Pillow with :meth:`PIL.Image.Image.draft`, which decodes at 1/2, 1/4 or 1/8
  scale in the DCT itself. It applies when the short side is at least ``2 * DRAFT_MARGIN`` times the target short
  side, and reduces no further than ``DRAFT_MARGIN`` times it. Measured: 1.1x to 2.3x faster than the full
  decode and resize (photos of 1536x1024 to 5120x3416 shrunk to a short side of 256); after the resize, within
  :data:`DRAFT_TOLERANCE` of the full path: on scikit-learn's photos (300x400 to 1280x1920, short sides 32 to
  256) the mean difference was 0.2 to 1.8 levels, the 99th percentile at most 12, single pixels up to 41 at sharp
  edges. A draft down to the target itself differed by up to 4 levels on average, so the margin stays.
- **anything else** (PNG, BMP, GIF, WebP, TIFF, CMYK JPEG...): Pillow, EXIF orientation applied; 16-bit and float
  images scaled to 0..255 (Pillow's ``convert`` would clip them); a palette with transparency goes through RGBA.

Grey images are made by Pillow's luma formula (``convert("L")``: ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``),
also from torchvision's RGB output: torchvision's own grey mode (the JPEG's decoded Y channel) differed from
it by at most 12 to 27 levels per image on 500x375 crops of scikit-learn's photos.

With a target ``short_side``, an image whose short side is longer is resized (bilinear, antialiased) so that its
short side is ``short_side``, with the output size computed from the full image, so the draft path and the full
path give images of the same size. Smaller images are returned as they are.

The tensors have the shape (C, H, W) but are laid out channels-last in memory (strides (1, W*C, C)), as both
decoders produce them: no transposing copy, and torch's uint8 antialiased resize, which works channels-last, runs
about twice as fast on them as on a contiguous (C, H, W) tensor.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.io import ImageReadMode

JPEG_TOLERANCE = 2  # levels between torchvision's and Pillow's JPEG decoders; measured 0 with this build
DRAFT_MARGIN = 2  # a draft decode keeps at least this many times the target short side
DRAFT_TOLERANCE = {"mean": 2.0, "p99": 12}  # levels between the draft path and the full one, after the resize
_JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a camera's multi-picture JPEG; its first picture is a plain JPEG
_TORCHVISION_MODES = ("L", "RGB")  # CMYK and YCCK JPEGs go through Pillow, which converts them as it always has
_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16-bit (or 32-bit int) grey
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
# What Pillow raises for a file it cannot decode: unknown or truncated data (OSError, UnidentifiedImageError),
# broken headers in some plugins (SyntaxError, ValueError, struct errors), images too large to be safe.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, EOFError, Image.DecompressionBombError)
# torchvision 0.29 deprecates its decoders in favour of TorchCodec, once per call site; they are still the
# fastest JPEG path here, and Pillow takes over where they are missing (see _torchvision_jpeg).
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


class UnreadableImage(Exception):
    """An image file that cannot be decoded; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def decode_image(path: str | Path, channels: int = 3, short_side: int | None = None) -> Tensor:
    """Decode ``path`` into a uint8 tensor (channels, H, W), laid out channels-last in memory.

    Args:
        path: an image file in any format Pillow reads.
        channels: 3 (RGB; grey images repeated, alpha dropped) or 1 (Pillow's luma).
        short_side: shrink images whose short side is longer to this short side (aspect ratio kept); None keeps
            the decoded size.

    Raises:
        UnreadableImage: the file is missing, unreadable, truncated or not an image Pillow can decode.
        ValueError: ``channels`` is not 1 or 3, or ``short_side`` is not positive.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if short_side is not None and short_side < 1:
        raise ValueError(f"short_side must be a positive number of pixels or None, got {short_side!r}")
    try:
        data = Path(path).read_bytes()  # one read: the header probe and the decoder share the bytes
        with Image.open(io.BytesIO(data)) as image:  # parses the header only
            _warn_if_large(path, image.size)
            draft = _draft_size(image, short_side)
            # the size before any draft reduction: the draft and the full decode shrink to the same size
            full_size = _oriented_size(image) if draft is not None else None
            pixels = None
            if image.format in _JPEG_FORMATS and image.mode in _TORCHVISION_MODES and draft is None:
                pixels = _decode_jpeg(data, channels, grey_file=image.mode == "L")
            if pixels is None:
                pixels = _decode_pillow(image, channels, draft)
    except _DECODE_ERRORS as e:
        # an OSError about the file itself names it: keep only its reason ("No such file or directory"); Pillow
        # names what it was given, here the in-memory copy of the file ("<_io.BytesIO object at 0x...>")
        reason = e.strerror if isinstance(e, OSError) and e.filename and e.strerror else \
            "cannot identify image file" if isinstance(e, UnidentifiedImageError) else str(e)
        raise UnreadableImage(path, reason or type(e).__name__) from None
    except RuntimeError as e:  # torchvision's decoder: corrupt or truncated data
        raise UnreadableImage(path, _torchvision_reason(e)) from None
    height, width = full_size or pixels.shape[-2:]
    return _shrink(pixels, short_side, height, width)


def _torchvision_reason(error: RuntimeError) -> str:
    """The reason in torchvision's "decode_jpeg, <file>.cpp:<line>, <reason>" message."""
    parts = str(error).strip().split(", ", 2)
    return parts[2] if len(parts) == 3 and ".cpp:" in parts[1] else str(error).strip() or "corrupt JPEG data"


def luma(rgb: Tensor) -> Tensor:
    """Pillow's ``convert("L")`` of a uint8 (3, H, W) tensor, exactly: a uint8 (1, H, W) tensor."""
    r, g, b = rgb.to(torch.int32).unbind(0)  # 255 * 65536 + 2^15 fits in int32
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8).unsqueeze(0)


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """The (H, W) that ``v2.Resize(short_side)`` gives an image of ``height`` x ``width`` (long side truncated)."""
    if width <= height:
        return int(short_side * height / width), short_side
    return short_side, int(short_side * width / height)


def _shrink(pixels: Tensor, short_side: int | None, height: int, width: int) -> Tensor:
    """``pixels`` resized so its short side is ``short_side``; (height, width) is the full image's size."""
    if short_side is None or min(height, width) <= short_side:
        return pixels
    size = list(short_side_size(height, width, short_side))
    return F.resize(pixels, size, antialias=True)  # bilinear, as v2.Resize; keeps the channels-last layout


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    """(height, width) of the image as displayed, after its EXIF orientation."""
    width, height = image.size
    return (width, height) if _orientation(image) in _TRANSPOSED else (height, width)


def _orientation(image: Image.Image) -> int:
    return image.getexif().get(ExifTags.Base.Orientation, 1)


def _draft_size(image: Image.Image, short_side: int | None) -> tuple[int, int] | None:
    """The size to ask :meth:`~PIL.Image.Image.draft` for, or None when a reduced decode does not apply."""
    if short_side is None or image.format not in _JPEG_FORMATS or image.mode not in ("L", "RGB", "CMYK"):
        return None
    width, height = image.size
    keep = DRAFT_MARGIN * short_side  # Pillow picks the smallest scale that stays at or above this size
    if min(width, height) < 2 * keep:  # not even 1/2 scale would keep it: decode in full
        return None
    factor = keep / min(width, height)
    return max(1, int(width * factor + 0.5)), max(1, int(height * factor + 0.5))


def _decode_jpeg(data: bytes, channels: int, grey_file: bool) -> Tensor | None:
    """torchvision's JPEG decode, or None when torchvision's decoder is not available."""
    decode = _torchvision_jpeg()
    if decode is None:
        return None
    mode = ImageReadMode.UNCHANGED if grey_file or channels == 1 else ImageReadMode.RGB
    pixels = decode(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode, apply_exif_orientation=True)
    if channels == 1 and pixels.shape[0] == 3:
        return luma(pixels)
    if channels == 3 and pixels.shape[0] == 1:
        return pixels.expand(3, -1, -1).contiguous()  # Pillow's L -> RGB repeats the grey
    return pixels


_JPEG_DECODER: list[Callable[..., Tensor] | None] = []  # [decode_jpeg or None], filled on first use


def _torchvision_jpeg() -> Callable[..., Tensor] | None:
    """``torchvision.io.decode_jpeg`` if it works here: it needs torchvision's compiled image extension, and
    torchvision 0.29 deprecates it (a later release will remove it)."""
    if not _JPEG_DECODER:
        try:
            from torchvision.io import decode_jpeg

            probe = io.BytesIO()
            Image.new("RGB", (8, 8), (200, 30, 90)).save(probe, "JPEG")
            decode_jpeg(torch.frombuffer(bytearray(probe.getvalue()), dtype=torch.uint8))
            _JPEG_DECODER.append(decode_jpeg)
        except (ImportError, RuntimeError, AttributeError):
            _JPEG_DECODER.append(None)
    return _JPEG_DECODER[0]


def _decode_pillow(image: Image.Image, channels: int, draft: tuple[int, int] | None) -> Tensor:
    if draft is not None:
        image.draft(None, draft)  # a reduced decode by the DCT itself: 1/2, 1/4 or 1/8 scale
    image = _convert(ImageOps.exif_transpose(image), channels)  # phone photos: the orientation the camera recorded
    array = np.array(image, dtype=np.uint8)  # np.array: a writable copy of Pillow's read-only buffer
    return torch.from_numpy(array.reshape(array.shape[0], array.shape[1], channels)).permute(2, 0, 1)


def _convert(image: Image.Image, channels: int) -> Image.Image:
    if image.mode in _HIGH_DEPTH_MODES or image.mode == "F":
        # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them (most pixels would turn
        # white): scale 0..65535 to 0..255 here. Float images are taken as 0..255 and clipped.
        array = np.asarray(image, dtype=np.float64)
        array = array / 257.0 if image.mode in _HIGH_DEPTH_MODES else array
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))  # 2-D uint8: mode L
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow warns when a palette with transparency is converted directly
    return image.convert("L" if channels == 1 else "RGB")  # the alpha channel, if any, is dropped


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
