"""Report outputs as plain functions: the confusion-matrix heatmap as PNG bytes, the report CSVs, ``history.csv``.

Nothing here knows about engines or TensorBoard (see :mod:`ignite_app.tb_reports` and
:mod:`ignite_app.report_files` for the handlers). The heatmap is drawn with matplotlib's object API on the Agg
canvas, never ``pyplot``: no display is needed and no global figure state is shared between threads.

Files written into ``runs/<run>/reports/`` (each replaced atomically, so a reader never sees half a file):

- ``confusion_matrix.csv``: header ``true\\predicted,<class>,...``; one row per true class.
- ``classification_report.csv``: header ``class,precision,recall,f1,accuracy,support``; one row per class, then
  ``macro avg`` and ``weighted avg`` (their ``accuracy`` cell is empty: see ``ClassificationReport.table``).
- ``confusion_matrix.png``: the heatmap of the same matrix.
- ``history.csv``: one row per epoch, the columns of :data:`HISTORY_COLUMNS`.
"""

from __future__ import annotations

import csv
import io
import math
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ignite_app.fileio import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from ignite_app.metrics import ClassificationReport

CONFUSION_MATRIX_CSV = "confusion_matrix.csv"
CLASSIFICATION_REPORT_CSV = "classification_report.csv"
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
HISTORY_CSV = "history.csv"
REPORT_FILES = (CONFUSION_MATRIX_CSV, CLASSIFICATION_REPORT_CSV, CONFUSION_MATRIX_PNG)
MATRIX_CORNER = "true\\predicted"  # first header cell of confusion_matrix.csv
REPORT_COLUMNS = ("class", "precision", "recall", "f1", "accuracy", "support")
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "precision_macro", "recall_macro", "f1_macro",
                   "lr", "seconds")

MAX_ANNOTATED_CLASSES = 30  # above this, cells are too small for their numbers: colour only
MAX_TICK_LABELS = 30  # above this, every k-th class is labelled so that the labels do not overlap
DPI = 100


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
        title: drawn above the matrix.

    Returns:
        The figure, ready for :func:`figure_png` or :func:`figure_array`.
    """
    counts = _check_counts(counts, class_names)
    c = len(class_names)
    annotate = c <= MAX_ANNOTATED_CLASSES if annotate is None else annotate
    side = min(max(5.0, 0.5 * c + 2.0), 10.0)  # inches: ~0.5 in per cell up to 16 classes, 10 in at most
    fig = Figure(figsize=(side, side), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = _values(counts, normalize)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=_vmax(counts, normalize), interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="recall" if normalize else "samples")
    step = max(1, math.ceil(c / MAX_TICK_LABELS))
    ticks = np.arange(0, c, step)
    ax.set_xticks(ticks, [class_names[i] for i in ticks], rotation=90)
    ax.set_yticks(ticks, [class_names[i] for i in ticks])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if annotate:
        size = 9 if c <= 12 else 7 if c <= 20 else 5
        for i in range(c):
            for j in range(c):
                ax.text(j, i, "", ha="center", va="center", fontsize=size)
        _fill_cells(ax, counts, values, normalize)
    return fig


def figure_array(fig: Figure) -> np.ndarray:
    """Draw ``fig`` on its Agg canvas; returns the pixels as an (H, W, 3) uint8 array (a copy)."""
    fig.canvas.draw()
    return _pixels(fig)


def figure_png(fig: Figure) -> bytes:
    """Draw ``fig`` and encode it as an 8-bit RGB PNG."""
    # drawn and encoded here rather than by savefig, which draws a figure twice when it has a layout engine
    return _png(figure_array(fig))


def _pixels(fig: Figure) -> np.ndarray:
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3): the background is opaque


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # compress_level 1: a few % larger than the default 6, and faster for a 1000 x 1000 image
    Image.fromarray(pixels).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


class _Heatmap:
    """A drawn heatmap that keeps its static parts as pixels: axes, class names, labels, colour bar.

    Every validation draws the same layout and colour scale with new numbers, and the static parts cost more than
    half of a drawing (each tick label is a text to lay out and rasterise). They are drawn once; afterwards only the
    image, the cell texts and the title are drawn over a copy of those pixels (matplotlib's "blitting").
    """

    def __init__(self, counts: np.ndarray, class_names: Sequence[str], normalize: bool, annotate: bool,
                 title: str) -> None:
        self.fig = heatmap_figure(counts, class_names, normalize=normalize, annotate=annotate, title=title)
        self.normalize = normalize
        self.ax = self.fig.axes[0]
        for artist in self.dynamic():
            artist.set_animated(True)  # left out of canvas.draw(): drawn by draw() only
        self.fig.canvas.draw()  # runs the constrained layout once...
        self.fig.set_layout_engine("none")  # ...and keeps it
        self.background = self.fig.canvas.copy_from_bbox(self.fig.bbox)
        self.inputs: tuple[bytes, str] | None = None
        self.png = b""

    def dynamic(self) -> list[Any]:
        # the spines frame the image: drawn again after it, as in a full drawing (zorder 2.5, above the image)
        return [self.ax.images[0], *self.ax.spines.values(), *self.ax.texts, self.ax.title]

    def draw(self, counts: np.ndarray, title: str) -> bytes:
        inputs = (counts.tobytes(), title)
        if inputs != self.inputs:  # the report files ask again for the image TensorBoard just got
            values = _values(counts, self.normalize)
            self.ax.images[0].set_data(values)
            self.ax.set_title(title)
            _fill_cells(self.ax, counts, values, self.normalize)
            self.fig.canvas.restore_region(self.background)
            for artist in self.dynamic():
                self.ax.draw_artist(artist)
            self.inputs, self.png = inputs, _png(_pixels(self.fig))
        return self.png


def heatmap_png(counts: np.ndarray, class_names: Sequence[str], *, normalize: bool = False,
                annotate: bool | None = None, title: str = "") -> bytes:
    """:func:`heatmap_figure` as PNG bytes, drawn over a cached figure's static parts: about 3x less work.

    The same arguments give the same bytes whatever was drawn before, in this process or another (a resumed run
    draws the same images as an uninterrupted one). Safe to call from several threads (one draws at a time).
    """
    counts = _check_counts(counts, class_names)
    annotate = len(class_names) <= MAX_ANNOTATED_CLASSES if annotate is None else annotate
    # What the static parts depend on: never the predictions, so a run reuses one figure per kind of plot.
    key = (tuple(class_names), normalize, annotate, bool(title), _vmax(counts, normalize))
    with _lock:
        heatmap = _figures.pop(key, None) or _Heatmap(counts, class_names, normalize, annotate, title)
        _figures[key] = heatmap  # most recently used last
        while len(_figures) > _MAX_FIGURES:
            _figures.popitem(last=False)
        return heatmap.draw(counts, title)


_lock = threading.Lock()
_figures: OrderedDict[tuple[Any, ...], _Heatmap] = OrderedDict()
_MAX_FIGURES = 4  # raw and normalised, for one or two class sets


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) of a PNG image, read from its header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"not PNG data: it starts with {png[:8]!r}")
    width, height = struct.unpack(">II", png[16:24])  # IHDR is always the first chunk
    return width, height


def _check_counts(counts: Any, class_names: Sequence[str]) -> np.ndarray:
    counts = np.asarray(counts)
    c = len(class_names)
    if counts.shape != (c, c):
        raise ValueError(f"counts must have shape ({c}, {c}) for {c} class names, got shape {counts.shape}")
    return counts


def _values(counts: np.ndarray, normalize: bool) -> np.ndarray:
    if not normalize:
        return counts.astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros(counts.shape), where=rows != 0)


def _vmax(counts: np.ndarray, normalize: bool) -> float:
    """The top of the colour scale: 1, or the largest class's number of samples (the same every validation)."""
    return 1.0 if normalize else float(max(int(counts.sum(axis=1).max()), 1))


def _fill_cells(ax: Any, counts: np.ndarray, values: np.ndarray, normalize: bool) -> None:
    """Write each cell's value into the texts made by :func:`heatmap_figure`; white on dark cells."""
    c = counts.shape[0]
    dark = values > 0.5 * _vmax(counts, normalize)
    for k, text in enumerate(ax.texts):
        i, j = divmod(k, c)
        text.set_text(f"{values[i, j]:.2f}" if normalize else str(counts[i, j]))
        text.set_color("white" if dark[i, j] else "black")


def heatmap_title(epoch: int, report: ClassificationReport) -> str:
    """The title of an epoch's heatmap, the same in TensorBoard and in ``confusion_matrix.png``."""
    return f"epoch {epoch}: accuracy {report.accuracy:.2%} over {report.num_samples} samples"


# --- text and CSV files -----------------------------------------------------------------------------------------


def report_markdown(report: ClassificationReport) -> str:
    """The per-class table with the macro and weighted rows, then the overall accuracy, as markdown."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4f}"
        return str(value).replace("|", "\\|")  # a "|" in a class name would end the cell

    table = report.table()
    lines = ["| " + " | ".join(REPORT_COLUMNS) + " |", "|---" + "|---:" * (len(REPORT_COLUMNS) - 1) + "|"]
    for name, values in zip(table.index, table.itertuples(index=False)):
        *scores, support = values
        lines.append("| " + " | ".join([cell(name), *(cell(float(v)) for v in scores), str(int(support))]) + " |")
    lines.append(f"\n**accuracy** {report.accuracy:.4f} over {report.num_samples} samples")
    return "\n".join(lines)


def _csv_text(rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # quotes names that hold a comma or a quote
    writer.writerows(rows)
    return buffer.getvalue()


def _number(value: Any) -> str:
    """repr of a float (exact: a resumed run can be compared digit for digit), "" for NaN, str otherwise."""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    return str(value)


def confusion_matrix_csv(report: ClassificationReport) -> str:
    """``confusion_matrix.csv``: header ``true\\predicted`` + class names, then one row of counts per true class."""
    rows: list[list[Any]] = [[MATRIX_CORNER, *report.class_names]]
    rows += [[name, *map(int, row)] for name, row in zip(report.class_names, report.counts)]
    return _csv_text(rows)


def classification_report_csv(report: ClassificationReport) -> str:
    """``classification_report.csv``: one row per class, then ``macro avg`` and ``weighted avg``."""
    table = report.table()
    rows: list[list[Any]] = [list(REPORT_COLUMNS)]
    for name, values in zip(table.index, table.itertuples(index=False)):
        *scores, support = values
        rows.append([name, *map(_number, scores), int(support)])
    return _csv_text(rows)


def write_report_files(folder: Path, report: ClassificationReport, png: bytes) -> list[Path]:
    """Write the three report files of ``report`` into ``folder`` (created if needed); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / CONFUSION_MATRIX_CSV, confusion_matrix_csv(report))
    atomic_write_text(folder / CLASSIFICATION_REPORT_CSV, classification_report_csv(report))
    atomic_write(folder / CONFUSION_MATRIX_PNG, lambda f: f.write(png))
    return [folder / name for name in REPORT_FILES]


def remove_report_files(folder: Path) -> None:
    """Remove the report files, e.g. those a killed run wrote for an epoch its checkpoint does not include."""
    for name in REPORT_FILES:
        (folder / name).unlink(missing_ok=True)


def history_row(record: Any) -> list[str]:
    """One ``history.csv`` row from an :class:`~ignite_app.handlers.EpochRecord` (or anything with its fields)."""
    row = [_number(getattr(record, column)) for column in HISTORY_COLUMNS]
    row[-1] = f"{record.seconds:.3f}"  # wall-clock time: exact digits would only suggest a precision it lacks
    return row


def history_csv(rows: Iterable[Sequence[str]]) -> str:
    """The text of ``history.csv``: the header, then ``rows`` as given."""
    return _csv_text([list(HISTORY_COLUMNS), *rows])


def read_history(path: Path, up_to_epoch: int) -> list[list[str]]:
    """The rows of ``path`` for epochs ``1..up_to_epoch``, as text (nothing when the file is missing).

    A resumed run keeps the rows of the epochs its checkpoint includes and drops those an interrupted process wrote
    after it, so that the file never lists an epoch twice.

    Raises:
        ValueError: the file does not start with the ``history.csv`` header (it is not this app's file).
    """
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != HISTORY_COLUMNS:
        raise ValueError(f"{path} does not start with the header {','.join(HISTORY_COLUMNS)}; move it away to let "
                         "the run write its history")
    return [row for row in rows[1:] if row and int(row[0]) <= up_to_epoch]


def write_history(path: Path, rows: Sequence[Sequence[str]]) -> None:
    """Replace ``history.csv`` with the header and ``rows``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, history_csv(rows))
