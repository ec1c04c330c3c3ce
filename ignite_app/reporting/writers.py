"""Report outputs as plain functions: the confusion-matrix heatmap as PNG bytes, the report CSVs, ``history.csv``.

Nothing here knows about engines or TensorBoard (see :mod:`ignite_app.reporting.tensorboard` and
:mod:`ignite_app.reporting.files` for the handlers). The heatmap is drawn by :mod:`ignite_app.reporting.heatmap`, which imports
matplotlib; this module does not, so that ``scripts/evaluate.py`` writes its CSVs without it.

Files written into ``runs/<run>/reports/`` (each replaced atomically, so a reader never sees half a file):

- ``confusion_matrix.csv``: header ``true\\predicted,<class>,...``; one row per true class.
- ``classification_report.csv``: header ``class,precision,recall,f1,accuracy,ap,roc_auc,support`` (``ap`` and
  ``roc_auc`` when the report carries scores: always in a training run); one row per class, then ``macro avg`` and
  ``weighted avg`` (their ``accuracy`` cell is empty: see ``ClassificationReport.table``; an empty ``roc_auc`` cell is
  a class without positives or without negatives).
- ``reliability.csv``: the reliability table of the same validation, one row per confidence bin.
- ``confusion_matrix.png``: the heatmap of the same matrix.
- ``history.csv``: one row per epoch, the columns of :data:`HISTORY_COLUMNS`.
"""

from __future__ import annotations

import csv
import io
import math
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ignite_app.metrics import markdown_table
from ignite_app.runstate.fileio import atomic_write, atomic_write_text
from ignite_app.runstate.rundir import (  # noqa: F401  (HISTORY_CSV, REPORT_FILES: re-exported for the report handlers)
    CLASSIFICATION_REPORT_CSV,
    CONFUSION_MATRIX_CSV,
    CONFUSION_MATRIX_PNG,
    HISTORY_CSV,
    RELIABILITY_CSV,
    REPORT_FILES,
)

if TYPE_CHECKING:
    from ignite_app.metrics import ClassificationReport

MATRIX_CORNER = "true\\predicted"  # first header cell of confusion_matrix.csv
REPORT_COLUMNS = ("class", "precision", "recall", "f1", "accuracy", "support")  # a report without scores
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "precision_macro", "recall_macro", "f1_macro",
                   "ap_macro", "roc_auc_macro", "ece", "lr", "seconds")
TOP5_COLUMN = "top5_accuracy"  # after val_accuracy, in runs with more than 5 classes


def history_columns(top5: bool = False) -> tuple[str, ...]:
    """The columns of ``history.csv``: :data:`HISTORY_COLUMNS`, with ``top5_accuracy`` after ``val_accuracy``."""
    if not top5:
        return HISTORY_COLUMNS
    at = HISTORY_COLUMNS.index("val_accuracy") + 1
    return (*HISTORY_COLUMNS[:at], TOP5_COLUMN, *HISTORY_COLUMNS[at:])
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) of a PNG image, read from its header."""
    if png[:8] != PNG_SIGNATURE:
        raise ValueError(f"not PNG data: it starts with {png[:8]!r}")
    width, height = struct.unpack(">II", png[16:24])  # IHDR is always the first chunk
    return width, height


def heatmap_title(epoch: int, report: ClassificationReport) -> str:
    """The title of an epoch's heatmap, the same in TensorBoard and in ``confusion_matrix.png``."""
    return f"epoch {epoch}: accuracy {report.accuracy:.2%} over {report.num_samples} samples"


# --- text and CSV files -----------------------------------------------------------------------------------------


def report_markdown(report: ClassificationReport) -> str:
    """The per-class table with the macro and weighted rows, then the overall accuracy, as markdown.

    :meth:`ClassificationReport.to_markdown` without the confusion matrix (TensorBoard shows it as an image).
    """
    text = (f"{markdown_table(report.table(), 'class')}\n\n"
            f"**accuracy** {report.accuracy:.4f} over {report.num_samples} samples")
    return text if report.scores is None else f"{text}; {report.scores}"


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
    rows: list[list[Any]] = [["class", *report.columns]]
    for name, values in zip(table.index, table.itertuples(index=False)):
        *scores, support = values
        rows.append([name, *map(_number, scores), int(support)])
    return _csv_text(rows)


def reliability_csv(report: ClassificationReport) -> str:
    """``reliability.csv``: ``bin,lower,upper,count,confidence,accuracy`` per confidence bin (empty cells: no
    sample in the bin); the report must carry scores."""
    if report.scores is None:
        raise ValueError("the report carries no scores (ConfusionMatrixMetric(..., scores=ScoreMetric(...)))")
    table = report.scores.reliability
    rows: list[list[Any]] = [["bin", *table.columns]]
    rows += [[b, *map(_number, values)] for b, values in zip(table.index, table.itertuples(index=False))]
    return _csv_text(rows)


def write_report_csvs(folder: Path, report: ClassificationReport) -> list[Path]:
    """Write ``confusion_matrix.csv`` and ``classification_report.csv`` into ``folder`` (created if needed), and
    ``reliability.csv`` when the report carries scores."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / CONFUSION_MATRIX_CSV, confusion_matrix_csv(report))
    atomic_write_text(folder / CLASSIFICATION_REPORT_CSV, classification_report_csv(report))
    written = [folder / CONFUSION_MATRIX_CSV, folder / CLASSIFICATION_REPORT_CSV]
    if report.scores is not None:
        atomic_write_text(folder / RELIABILITY_CSV, reliability_csv(report))
        written.append(folder / RELIABILITY_CSV)
    return written


def write_report_files(folder: Path, report: ClassificationReport, png: bytes) -> list[Path]:
    """Write the report files of ``report`` into ``folder`` (created if needed); returns their paths."""
    written = write_report_csvs(folder, report)
    atomic_write(folder / CONFUSION_MATRIX_PNG, lambda f: f.write(png))
    return [*written, folder / CONFUSION_MATRIX_PNG]


def remove_report_files(folder: Path) -> None:
    """Remove the report files, e.g. those a killed run wrote for an epoch its checkpoint does not include."""
    for name in REPORT_FILES:
        (folder / name).unlink(missing_ok=True)


def history_row(record: Any, columns: Sequence[str] = HISTORY_COLUMNS) -> list[str]:
    """One ``history.csv`` row from an :class:`~ignite_app.handlers.EpochRecord` (or anything with its fields)."""
    row = [_number(getattr(record, column)) for column in columns]
    row[-1] = f"{record.seconds:.3f}"  # wall-clock time: exact digits would only suggest a precision it lacks
    return row


def history_csv(rows: Iterable[Sequence[str]], columns: Sequence[str] = HISTORY_COLUMNS) -> str:
    """The text of ``history.csv``: the header, then ``rows`` as given."""
    return _csv_text([list(columns), *rows])


def read_history(path: Path, up_to_epoch: int, columns: Sequence[str] = HISTORY_COLUMNS) -> list[list[str]]:
    """The rows of ``path`` for epochs ``1..up_to_epoch``, as text (nothing when the file is missing).

    A resumed run keeps the rows of the epochs its checkpoint includes and drops those an interrupted process wrote
    after it, so that the file never lists an epoch twice.

    Raises:
        ValueError: the file does not start with the header ``columns`` (it is not this run's file).
    """
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != tuple(columns):
        raise ValueError(f"{path} does not start with the header {','.join(columns)}; move it away to let "
                         "the run write its history")
    return [row for row in rows[1:] if row and int(row[0]) <= up_to_epoch]


def write_history(path: Path, rows: Sequence[Sequence[str]], columns: Sequence[str] = HISTORY_COLUMNS) -> None:
    """Replace ``history.csv`` with the header and ``rows``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, history_csv(rows, columns))
