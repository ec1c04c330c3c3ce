"""The reliability diagram of every validation (TensorBoard ``val/reliability``), painted into a frame.

:func:`ignite_app.metrics.reliability_png` draws the whole diagram with matplotlib, 60-150 ms: more than the rest of
the validation report together. Only the bars change from one validation to the next, so matplotlib draws the
frame once (axes, labels, legend, diagonal: :func:`~ignite_app.metrics.score_report.reliability_figure` without a
report), and :func:`reliability_image` paints the bars and the title into a copy of its pixels with numpy and
Pillow, then puts the diagonal and the legend back on top: ~2 ms. Its tests compare it with the matplotlib drawing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.font_manager import FontProperties
from PIL import Image, ImageDraw

from ignite_app.metrics.ranking import CALIBRATION_BINS
from ignite_app.metrics.score_report import ACCURACY_COLOR, GAP_ALPHA, GAP_COLOR, ScoreReport, reliability_figure
from ignite_app.reporting.heatmap import _font, _pixels, _png

SIZE = 320


@dataclass(frozen=True)
class _Frame:
    pixels: np.ndarray  # (H, W, 3) the empty diagram
    diagonal: np.ndarray  # (H, W, 1) float: how much of each pixel the dashed diagonal covers (antialiased)
    line_rgb: np.ndarray  # (3,) the diagonal's colour
    legend: tuple[slice, slice]  # the legend's rows and columns, painted over the bars
    box: tuple[float, float, float, float]  # data (0, 0) and (1, 1) in pixels: left, bottom, right, top
    title_xy: tuple[float, float]  # where the title's baseline centre goes


def _rgb(color: str) -> np.ndarray:
    return np.array(to_rgb(color)) * 255


@functools.lru_cache(maxsize=4)
def _frame(size: int) -> _Frame:
    fig = reliability_figure(None, "lp", size)  # "lp": the title's height and baseline, erased below
    fig.canvas.draw()
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    height = fig.canvas.get_width_height()[1]
    title = ax.title.get_window_extent(renderer)
    legend = ax.get_legend().get_window_extent(renderer)
    ax.title.set_text("")
    fig.canvas.draw()
    pixels = _pixels(fig)
    line = ax.lines[0]
    line.set_visible(False)
    fig.canvas.draw()
    without = _pixels(fig).astype(np.float32)
    gray = np.array(to_rgb(line.get_color())) * 255
    # per pixel, the share of the line's colour in the frame's: 0 off the line, 1 at its core
    diagonal = ((without - pixels) / np.maximum(without - gray, 1)).clip(0, 1).max(axis=2, keepdims=True)
    x0, y0, x1, y1 = (round(v) for v in (legend.x0, height - legend.y1, legend.x1, height - legend.y0))
    (left, bottom), (right, top) = ax.transData.transform([(0, 0), (1, 1)])
    descent = title.y0 + (title.y1 - title.y0) * 0.22  # about the baseline of "lp"
    return _Frame(pixels, diagonal, gray, (slice(max(y0 - 1, 0), y1 + 1), slice(max(x0 - 1, 0), x1 + 1)),
                  (left, height - bottom, right, height - top), ((title.x0 + title.x1) / 2, height - descent))


def reliability_image(report: ScoreReport, title: str, size: int = SIZE) -> bytes:
    """The reliability diagram of `report` as an RGB PNG, as :func:`~ignite_app.metrics.reliability_png` draws it."""
    frame = _frame(size)
    pixels = frame.pixels.astype(np.float32)
    left, bottom, right, top = frame.box

    def x(v: float) -> int:
        return round(left + v * (right - left))

    def y(v: float) -> int:
        return round(bottom - v * (bottom - top))

    blue, red = _rgb(ACCURACY_COLOR), _rgb(GAP_COLOR)
    for b in np.flatnonzero(report.bin_count):
        xa, xb = x(b / CALIBRATION_BINS), x((b + 1) / CALIBRATION_BINS)
        accuracy, confidence = float(report.bin_accuracy[b]), float(report.bin_confidence[b])
        pixels[y(accuracy):y(0), xa:xb] = blue
        pixels[y(accuracy):y(0), [xa, xb - 1]] = 255  # the white edges between neighbouring bars
        low, high = y(max(accuracy, confidence)), y(min(accuracy, confidence))
        if high > low:
            pixels[low:high, xa:xb] = (1 - GAP_ALPHA) * pixels[low:high, xa:xb] + GAP_ALPHA * red
            pixels[low:high, [xa, xb - 1]] = red
            pixels[[low, high - 1], xa:xb] = red
    pixels = frame.diagonal * frame.line_rgb + (1 - frame.diagonal) * pixels  # the diagonal over the bars
    pixels[frame.legend] = frame.pixels[frame.legend]
    image = Image.fromarray(pixels.astype(np.uint8))
    ImageDraw.Draw(image).text(frame.title_xy, title, fill="black", font=_font(FontProperties(size=9)), anchor="ms")
    return _png(np.asarray(image))
