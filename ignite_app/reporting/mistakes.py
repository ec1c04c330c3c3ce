"""The confident-mistakes grid (``--log-mistakes K``, TensorBoard ``val/mistakes``) drawn with Pillow.

Each tile is one validation image as the model received it (raw pixels), scaled to a readable size, with
``true -> predicted`` and the model's confidence under it; the most confident mistake comes first.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ignite_app.metrics.mistakes import Mistakes

TILE = 112  # pixels per image; small images are scaled up without smoothing, so their pixels stay visible
COLUMNS = 4  # TensorBoard fits an image to its card: a narrow grid stays readable
_LABEL_HEIGHT = 34
_NAME_CHARS = 14  # longer class names are shortened in the tile's label


def _short(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else name[:_NAME_CHARS - 1] + "…"


def _tile(image: np.ndarray) -> Image.Image:
    """A (C, H, W) uint8 image as an RGB tile, its longer side TILE pixels."""
    pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    picture = Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")
    scale = TILE / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR)


def mistakes_png(mistakes: Mistakes, class_names: Sequence[str], title: str) -> bytes:
    """The mistakes as one PNG grid of up to COLUMNS tiles per row, under ``title``."""
    font = ImageFont.load_default(size=13)
    count = len(mistakes)
    columns = max(1, min(COLUMNS, count))
    rows = max(1, -(-count // columns))
    header = 26
    title = title if count else f"{title}: none"
    width = max(columns * (TILE + 8) + 8, round(font.getlength(title)) + 16)
    canvas = Image.new("RGB", (width, header + rows * (TILE + _LABEL_HEIGHT + 8)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 6), title, fill="black", font=font)
    images = mistakes.images.numpy()
    for i in range(count):
        x = 8 + (i % columns) * (TILE + 8)
        y = header + (i // columns) * (TILE + _LABEL_HEIGHT + 8)
        canvas.paste(_tile(images[i]), (x, y))
        true, predicted = (class_names[int(c)] for c in (mistakes.true[i], mistakes.predicted[i]))
        draw.text((x, y + TILE + 2), f"{_short(true)} -> {_short(predicted)}", fill="black", font=font)
        draw.text((x, y + TILE + 17), f"{float(mistakes.confidence[i]):.3f}", fill="#b22222", font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
