"""The confusion-matrix heatmap: drawn by matplotlib once per kind of plot, painted with numpy at every validation.

Every validation draws two heatmaps (counts and row-normalised). Drawing one with matplotlib costs 100-300 ms of
Python code, most of a 0.4 s digits epoch, and a background thread does not hide it on a CPU (the drawing holds
the GIL while training keeps the cores busy). Only the numbers change from one validation to the next, so
matplotlib draws each kind of plot once without them (axes, class names, labels, colour bar and an empty image
area: a *frame*), and :func:`heatmap_png` paints the cells, their numbers and the title into a copy of the frame's
pixels with numpy and Pillow, then writes the PNG itself: a few ms per heatmap.

:func:`heatmap_figure` is the whole plot drawn by matplotlib: the look the painted images copy (their tests compare
the two), and a figure to show in a notebook. matplotlib is used through its object API on the Agg canvas, never
``pyplot``: no display is needed and no global figure state is shared between threads.
"""

from __future__ import annotations

import functools
import math
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont
from PIL import Image, ImageDraw, ImageFont

from ignite_app.reporting.writers import PNG_SIGNATURE

MAX_ANNOTATED_CLASSES = 30  # above this, cells are too small for their numbers: colour only
MAX_TICK_LABELS = 30  # above this, every k-th class is labelled so that the labels do not overlap
DPI = 100
COLORMAP = "Blues"
_TITLE_PLACEHOLDER = "lp"  # matplotlib gives a line at least the height of "lp": the room of any one-line title
_PROBE_WRAP = 16**3  # a probe image tells 4096 cells apart (three hex digits, one per colour channel)


def heatmap_figure(counts: np.ndarray, class_names: Sequence[str], *, normalize: bool = False,
                   annotate: bool | None = None, title: str = "") -> Figure:
    """Draw a confusion matrix (rows = true class, columns = predicted) on a new Agg figure.

    The colour scale does not depend on the predictions: from 0 to the largest class's number of samples (counts)
    or to 1 (normalized), so that the images of successive epochs can be compared at a glance.

    Args:
        counts: (C, C) non-negative integer counts.
        class_names: the C class names, in class-index order (both axes).
        normalize: divide each row by its sum, so that the diagonal is each class's recall (0 for an empty row).
        annotate: write each cell's value into it; ``None`` does so up to :data:`MAX_ANNOTATED_CLASSES` classes.
        title: one line, drawn above the matrix.

    Returns:
        The figure, ready for :func:`figure_png` or :func:`figure_array`.
    """
    counts = _check_counts(counts, class_names)
    c = len(class_names)
    values, vmax = _values(counts, normalize), _vmax(counts, normalize)
    fig = _figure(class_names, normalize, vmax, title)
    ax = fig.axes[0]
    ax.images[0].set_data(values)
    if _annotate(c, annotate):
        dark = values > 0.5 * vmax  # white on dark cells
        for (i, j), text in zip(np.ndindex(c, c), _cell_texts(counts, values, normalize)):
            ax.text(j, i, text, ha="center", va="center", fontsize=_cell_points(c),
                    color="white" if dark[i, j] else "black")
    return fig


def figure_array(fig: Figure) -> np.ndarray:
    """Draw ``fig`` on its Agg canvas; returns the pixels as an (H, W, 3) uint8 array (a copy)."""
    fig.canvas.draw()
    return _pixels(fig)


def figure_png(fig: Figure) -> bytes:
    """Draw ``fig`` and encode it as an 8-bit RGB PNG."""
    return _png(figure_array(fig))


def heatmap_png(counts: np.ndarray, class_names: Sequence[str], *, normalize: bool = False,
                annotate: bool | None = None, title: str = "") -> bytes:
    """:func:`heatmap_figure` as PNG bytes, painted into a cached frame: a few ms instead of a matplotlib drawing.

    The same arguments give the same bytes whatever was drawn before, in this process or another (a resumed run
    draws the same images as an uninterrupted one). Safe to call from several threads (one draws at a time).
    """
    counts = _check_counts(counts, class_names)
    annotate = _annotate(len(class_names), annotate)
    vmax = _vmax(counts, normalize)
    # What a frame depends on: never the predictions, so a run reuses one frame per kind of plot.
    key = (tuple(class_names), normalize, annotate, bool(title), vmax)
    with _lock:
        frame = _frames.pop(key, None) or _Frame(class_names, normalize, annotate, bool(title), vmax)
        _frames[key] = frame  # most recently used last
        while len(_frames) > _MAX_FRAMES:
            _frames.popitem(last=False)
        return frame.paint(counts, title)


class _Frame:
    """One kind of heatmap drawn by matplotlib without its numbers, and where matplotlib puts them, in pixels.

    The cell boundaries are not computed but observed: matplotlib draws probe images whose colours encode each
    cell's row or column, so the painted cells cover exactly the pixels that matplotlib's image would.
    """

    def __init__(self, class_names: Sequence[str], normalize: bool, annotate: bool, has_title: bool,
                 vmax: float) -> None:
        c = len(class_names)
        fig = _figure(class_names, normalize, vmax, _TITLE_PLACEHOLDER if has_title else "")
        ax = fig.axes[0]
        image, title = ax.images[0], ax.title
        for artist in (image, title):
            artist.set_animated(True)  # laid out (the title keeps its room) but left out of canvas.draw()
        fig.canvas.draw()
        fig.set_layout_engine("none")  # the probes must not move the axes
        self.pixels = _pixels(fig)  # (H, W, 3)
        (self.top, self.left), rows, self.cols = _probe_cells(fig, image)
        self.row_runs = np.bincount(rows, minlength=c)  # rows only grow downwards: the pixel rows of each cell row
        self.shape = (len(rows), len(self.cols))
        area = self.pixels[self.top:self.top + len(rows), self.left:self.left + len(self.cols)]
        # The spines (black, drawn over the image) overlap its edges: the frame holds them over white, as
        # 255 * (1 - coverage), which is also the factor by which they darken whatever colour lies below.
        self.ink = np.nonzero((area != 255).any(axis=2))  # (rows, columns) in the area
        self.ink_shade = area[self.ink].astype(np.uint16)  # (n, 3)
        self.cell_font = _font(FontProperties(size=_cell_points(c))) if annotate else None
        self.cell_x, self.cell_y = _cell_anchors(ax, c, self.pixels.shape[0], self.cell_font)
        x, y = title.get_transform().transform(title.get_position())  # the middle of its baseline
        self.title_xy = (round(x), round(self.pixels.shape[0] - y))
        self.title_font = _font(title.get_fontproperties())
        self.normalize, self.vmax = normalize, vmax
        colormap = matplotlib.colormaps[COLORMAP]
        self.lut = colormap(np.arange(colormap.N), bytes=True)[:, :3]  # (256, 3): integers index the colours
        self.inputs: tuple[bytes, str] | None = None
        self.png = b""

    def paint(self, counts: np.ndarray, title: str) -> bytes:
        inputs = (counts.tobytes(), title)
        if inputs == self.inputs:  # the report files ask again for the image TensorBoard just got
            return self.png
        values = _values(counts, self.normalize)
        # matplotlib's colormap of float data, without its checks for bad and out-of-range values (there are
        # none): values / vmax in float64 times 256, 1.0 taking the last colour. A value on the edge between two
        # colours gets the same one as in matplotlib's drawing.
        index = values / self.vmax * len(self.lut)
        colours = self.lut[np.minimum(index, len(self.lut) - 1).astype(np.intp)]  # (C, C, 3)
        pixels = self.pixels.copy()
        area = pixels[self.top:self.top + self.shape[0], self.left:self.left + self.shape[1]]  # a view
        # each pixel takes its cell's colour (nearest neighbour), whole rows at a time: ~20x faster than indexing
        # every pixel
        area[...] = np.repeat(np.ascontiguousarray(colours)[:, self.cols], self.row_runs, axis=0)
        area[self.ink] = (area[self.ink] * self.ink_shade + 127) // 255
        if self.cell_font is not None:
            c = len(counts)
            dark = (values > 0.5 * self.vmax).tolist()
            for (i, j), text in zip(np.ndindex(c, c), _cell_texts(counts, values, self.normalize)):
                _stamp(pixels, _cell_mask(self.cell_font, text), self.cell_x[j], self.cell_y[i], dark[i][j])
        if title:
            _stamp(pixels, _text_mask(self.title_font, title, "ms"), *self.title_xy, white=False)
        self.inputs, self.png = inputs, _png(pixels)
        return self.png


_lock = threading.Lock()
_frames: OrderedDict[tuple[Any, ...], _Frame] = OrderedDict()
_MAX_FRAMES = 4  # raw and normalised, for one or two class sets


def _figure(class_names: Sequence[str], normalize: bool, vmax: float, title: str) -> Figure:
    """Everything but the numbers: axes, class names, labels, colour bar, title, and an image of zeros."""
    c = len(class_names)
    side = min(max(5.0, 0.5 * c + 2.0), 10.0)  # inches: ~0.5 in per cell up to 16 classes, 10 in at most
    fig = Figure(figsize=(side, side), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(np.zeros((c, c)), cmap=COLORMAP, vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="recall" if normalize else "samples")
    step = max(1, math.ceil(c / MAX_TICK_LABELS))
    ticks = np.arange(0, c, step)
    ax.set_xticks(ticks, [class_names[i] for i in ticks], rotation=90)
    ax.set_yticks(ticks, [class_names[i] for i in ticks])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return fig


def _cell_anchors(ax: Any, c: int, height: int, font: ImageFont.FreeTypeFont | None) -> tuple[list[int], list[int]]:
    """Where the numbers go, in whole pixels: the middle of each column of cells, the baseline of each row.

    Whole pixels, so that each number's mask is rendered once for every cell that shows it; matplotlib places its
    letters to 1/64 pixel, so a number may sit up to a pixel away from where matplotlib would write it.
    """
    centres = ax.transData.transform(np.column_stack([np.arange(c), np.arange(c)]))  # origin at the bottom
    x, y = centres[:, 0], height - centres[:, 1]
    if font is not None:  # matplotlib centres a line of text from the top of "l" to the bottom of "p"
        _, top, _, bottom = font.getbbox("lp", anchor="ls")
        y = y - (top + bottom) / 2
    return np.round(x).astype(int).tolist(), np.round(y).astype(int).tolist()


def _probe_cells(fig: Figure, image: Any) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """The image area's top-left pixel, the matrix row of each of its pixel rows and the column of each column."""
    c = image.get_array().shape[0]
    index = np.arange(c) % _PROBE_WRAP

    def draw(colours: np.ndarray) -> np.ndarray:  # (C, C, 3) uint8, drawn where the image goes
        image.set_data(colours)
        image.axes.draw_artist(image)
        return _pixels(fig).astype(np.int64)

    def probe(cells: np.ndarray) -> np.ndarray:  # (C, C) indices as three hex digits, each in the middle of its
        digits = cells[..., None] // 16 ** np.arange(3) % 16  # 16 levels: a rounding in the resampling cannot
        return draw((16 * digits + 8).astype(np.uint8))  # change the digit, nor make it 0

    black = draw(np.zeros((c, c, 3), np.uint8))
    by_column = probe(np.broadcast_to(index, (c, c)))
    covered = (by_column != black).any(axis=2)
    ys, xs = np.flatnonzero(covered.any(axis=1)), np.flatnonzero(covered.any(axis=0))
    by_row = probe(np.broadcast_to(index[:, None], (c, c)))
    cols = _decode(by_column[(ys[0] + ys[-1]) // 2, xs[0]:xs[-1] + 1])
    rows = _decode(by_row[ys[0]:ys[-1] + 1, (xs[0] + xs[-1]) // 2])
    return (int(ys[0]), int(xs[0])), rows, cols


def _decode(line: np.ndarray) -> np.ndarray:
    """The cell indices of a line of probe pixels (n, 3); they only grow, which undoes the wrap past 4096."""
    low = (line // 16 * 16 ** np.arange(3)).sum(axis=1)
    return low + _PROBE_WRAP * np.cumsum(np.diff(low, prepend=low[0]) < 0)


def _stamp(pixels: np.ndarray, mask: tuple[np.ndarray, tuple[int, int]], x: int, y: int, white: bool) -> None:
    """Blend a text's mask into ``pixels`` (H, W, 3), its anchor at pixel (x, y): ink * a + pixel * (1 - a)."""
    keep, (dx, dy) = mask  # keep: (h, w, 1) 255 * (1 - a)
    x0, y0 = x + dx, y + dy
    top, left = max(y0, 0), max(x0, 0)  # the part inside the image
    bottom, right = min(y0 + keep.shape[0], pixels.shape[0]), min(x0 + keep.shape[1], pixels.shape[1])
    if top >= bottom or left >= right:
        return
    keep = keep[top - y0:bottom - y0, left - x0:right - x0]
    region = pixels[top:bottom, left:right]
    if white:
        region[...] = 255 - ((255 - region) * keep + 127) // 255
    else:
        region[...] = (region * keep + 127) // 255


def _text_mask(font: ImageFont.FreeTypeFont, text: str, anchor: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Pillow's rendering of ``text`` as (h, w, 1) uint16 255 * (1 - coverage), and its corner from the anchor."""
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font,
                                                                                anchor=anchor)
    left, top = math.floor(left), math.floor(top)
    mask = Image.new("L", (max(math.ceil(right) - left, 1), max(math.ceil(bottom) - top, 1)))
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font, anchor=anchor)
    return (255 - np.asarray(mask, dtype=np.uint16))[..., None], (left, top)


@functools.lru_cache(maxsize=4096)
def _cell_mask(font: ImageFont.FreeTypeFont, text: str) -> tuple[np.ndarray, tuple[int, int]]:
    """A cell's number, centred on its baseline: rendered once per text (~0.1 ms); a run shows the same numbers again
    and again."""
    return _text_mask(font, text, "ms")


@functools.lru_cache(maxsize=16)
def _font_file(path: str, pixels: float) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, pixels)


def _font(properties: FontProperties) -> ImageFont.FreeTypeFont:
    """The font file and size matplotlib would use for ``properties``, for Pillow (sizes in pixels, not points)."""
    return _font_file(findfont(properties), properties.get_size_in_points() * DPI / 72)


def _pixels(fig: Figure) -> np.ndarray:
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3): the background is opaque


def _png(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 as an 8-bit RGB PNG.

    Written here rather than by Pillow, whose encoder tries five filters on every row: ~15 ms at 1000 x 1000
    pixels, more than all the painting. One filter does as well on a heatmap: "up" (each byte minus the one above),
    which turns every row inside a cell row into zeros. zlib level 1: a few % larger than the default 6, and
    several times faster.
    """
    height, width, _ = pixels.shape
    flat = pixels.reshape(height, -1)
    rows = np.empty((height, 1 + 3 * width), np.uint8)
    rows[:, 0] = 2  # each row starts with its filter type: 2, up
    rows[0, 1:] = flat[0]  # the first row's "row above" is zeros
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # modulo 256, as PNG expects

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # 8 bits per channel, RGB, deflate, a filter byte per row, not interlaced
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1))
            + chunk(b"IEND", b""))


def _check_counts(counts: Any, class_names: Sequence[str]) -> np.ndarray:
    counts = np.asarray(counts)
    c = len(class_names)
    if counts.shape != (c, c):
        raise ValueError(f"counts must have shape ({c}, {c}) for {c} class names, got shape {counts.shape}")
    return counts


def _annotate(c: int, annotate: bool | None) -> bool:
    return c <= MAX_ANNOTATED_CLASSES if annotate is None else annotate


def _cell_points(c: int) -> int:
    return 9 if c <= 12 else 7 if c <= 20 else 5  # font size: the numbers shrink with the cells


def _cell_texts(counts: np.ndarray, values: np.ndarray, normalize: bool) -> list[str]:
    """Each cell's number, row by row."""
    if normalize:
        return [f"{v:.2f}" for v in values.ravel().tolist()]
    return [str(n) for n in counts.ravel().tolist()]


def _values(counts: np.ndarray, normalize: bool) -> np.ndarray:
    if not normalize:
        return counts.astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros(counts.shape), where=rows != 0)


def _vmax(counts: np.ndarray, normalize: bool) -> float:
    """The top of the colour scale: 1, or the largest class's number of samples (the same every validation)."""
    return 1.0 if normalize else float(max(int(counts.sum(axis=1).max()), 1))
