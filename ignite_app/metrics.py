"""The confusion-matrix metric, the per-class report computed from it, and the label-map file format.

`ConfusionMatrixMetric` accumulates an exact int64 confusion matrix (rows = true class, columns = predicted
class) and computes a `ClassificationReport` whose numbers equal scikit-learn's `confusion_matrix` and
`precision_recall_fscore_support(..., labels=range(C), zero_division=0)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import EpochWise, MetricUsage, reinit__is_reduced, sync_all_reduce
from torch import Tensor

from ignite_app.fileio import atomic_write_text

__all__ = [
    "ACCURACY",
    "F1_MACRO",
    "PRECISION_MACRO",
    "RECALL_MACRO",
    "REPORT",
    "SCORE_COLUMNS",
    "MACRO_ROW",
    "WEIGHTED_ROW",
    "MAX_PRINTED_MATRIX",
    "ClassificationReport",
    "ConfusionMatrixMetric",
    "markdown_table",
    "read_label_map",
    "write_label_map",
]

# Keys of `engine.state.metrics`; the rest of the app (checkpointing, TensorBoard) refers to these names.
ACCURACY = "accuracy"
PRECISION_MACRO = "precision_macro"
RECALL_MACRO = "recall_macro"
F1_MACRO = "f1_macro"
REPORT = "report"  # default name of the metric itself: the ClassificationReport is stored under it

SCORE_COLUMNS = ("precision", "recall", "f1", "accuracy", "support")  # the columns of per_class and table()
MACRO_ROW = "macro avg"  # the two summary rows table() appends to the per-class rows
WEIGHTED_ROW = "weighted avg"
MAX_PRINTED_MATRIX = 30  # str() and to_markdown() leave out larger matrices: 1000 x 1000 cells help nobody

_UNSET = object()  # marks "this metric has not written the key", whatever another writer stored there
_INTEGER_DTYPES = frozenset(
    {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32, torch.uint64}
)


def _check_class_names(names: Sequence[str], where: str = "class_names") -> tuple[str, ...]:
    """Return `names` as a tuple, or raise if a name is not a usable, unique, single-line string."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TypeError(
            f"{where} must be a sequence of class names such as ['cat', 'dog'], got {type(names).__name__} "
            f"{names!r:.80}; hint: read a label-map file with read_label_map(path)"
        )
    if len(names) == 0:
        raise ValueError(f"{where} is empty: expected one name per class (at least one)")
    first_seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"{where}[{i}] must be a str, got {type(name).__name__} {name!r}")
        if not name.strip():
            raise ValueError(f"{where}[{i}] is blank ({name!r}): every class needs a visible name")
        if "\n" in name or "\r" in name:
            raise ValueError(f"{where}[{i}] = {name!r} contains a line break; a label map holds one name per line")
        if name in first_seen:
            raise ValueError(f"{where}[{i}] = {name!r} repeats {where}[{first_seen[name]}]: names must be unique")
        first_seen[name] = i
    return tuple(names)


def read_label_map(path: str | os.PathLike[str]) -> list[str]:
    """Read a label map: UTF-8 text, one class name per line, line ``i`` (counting from 0) is class ``i``.

    Args:
        path: the label-map file. A UTF-8 byte-order mark and Windows line endings are accepted.

    Returns:
        The class names in class-index order.

    Raises:
        ValueError: the file is empty, or a line is blank or repeats an earlier name (the message gives the
            1-based line number, as an editor shows it).
    """
    text = Path(path).read_text(encoding="utf-8-sig")
    # Split on "\n" only: str.splitlines() would also split on rare separators that may be part of a name.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another one
    if not lines:
        raise ValueError(f"label map {str(path)!r} is empty: expected one class name per line")
    first_seen: dict[str, int] = {}
    names = []
    for number, line in enumerate(lines, start=1):
        name = line.removesuffix("\r")
        if not name.strip():
            raise ValueError(f"label map {str(path)!r}: line {number} (class {number - 1}) is blank")
        if name in first_seen:
            raise ValueError(
                f"label map {str(path)!r}: line {number} repeats {name!r} from line {first_seen[name]}; "
                "class names must be unique"
            )
        first_seen[name] = number
        names.append(name)
    return names


def write_label_map(path: str | os.PathLike[str], names: Sequence[str]) -> None:
    """Write `names` as a label map that `read_label_map` reads back unchanged.

    The file is replaced atomically (:func:`ignite_app.fileio.atomic_write_text`): a reader never sees half a
    label map.

    Args:
        path: the file to create or replace.
        names: class names in class-index order; non-empty, unique, no blank names, no line breaks.
    """
    names = _check_class_names(names, where="names")
    atomic_write_text(Path(path), "\n".join(names) + "\n")


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise division that gives 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    return np.divide(numerator, denominator, out=out, where=denominator != 0)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _format(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def markdown_table(df: pd.DataFrame, corner: str) -> str:
    """``df`` as a markdown table: ``corner`` heads the index column, numbers are right-aligned, floats have 4
    decimals (NaN: an empty cell)."""
    def cell(value: Any) -> str:
        return _format(value).replace("|", "\\|")  # a "|" inside a class name would end the cell

    rows = [[corner, *map(cell, df.columns)]]
    rows += [[cell(label), *map(cell, values)] for label, values in zip(df.index, df.itertuples(index=False))]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|---" + "|---:" * len(df.columns) + "|")
    return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class ClassificationReport:
    """Per-class and averaged scores computed from a confusion matrix (rows = true class, columns = predicted).

    Every number equals scikit-learn's ``confusion_matrix(y, p, labels=range(C))`` and
    ``precision_recall_fscore_support(y, p, labels=range(C), zero_division=0)``: a class with no samples has
    recall 0 and a class with no predictions has precision 0, and both count as 0 in the macro means. The
    tutorial's ``MetricTracker`` skipped such classes when averaging, which inflates its macro scores.

    The report is immutable: `counts` is a read-only copy, and every DataFrame or dict it returns is built on
    access, so changing one never changes the report.

    Attributes:
        class_names: the class names, in class-index order.
        counts: read-only int64 array (C, C); ``counts[i, j]`` = samples of true class i predicted as class j.
    """

    class_names: tuple[str, ...]
    counts: np.ndarray = field(repr=False)
    _scores: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = _check_class_names(self.class_names)
        counts = np.asarray(self.counts)
        c = len(names)
        if counts.shape != (c, c):
            raise ValueError(f"counts must have shape ({c}, {c}) for {c} class names, got shape {counts.shape}")
        if counts.dtype.kind not in "iu":
            raise ValueError(f"counts must be integers (sample counts), got dtype {counts.dtype}")
        if (counts < 0).any():
            raise ValueError(f"counts must be non-negative, got minimum {counts.min()}")
        if counts.sum() == 0:
            raise ValueError("counts are all zero: a report needs at least one sample")
        # Private copy: the caller's array (often a metric's live state) may change after this point.
        counts = _read_only(counts.astype(np.int64, copy=True))
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "_scores", self._compute_scores(counts))

    @classmethod
    def from_counts(cls, counts: Any, class_names: Sequence[str]) -> ClassificationReport:
        """Build a report from a (C, C) count matrix (numpy array, CPU tensor or nested lists; rows = truth)."""
        return cls(class_names=tuple(class_names), counts=np.asarray(counts))

    @staticmethod
    def _compute_scores(counts: np.ndarray) -> dict[str, np.ndarray]:
        # Vectorised over the C x C counts: the cost does not depend on the number of samples.
        tp = np.diag(counts)
        support = counts.sum(axis=1)  # (C,) samples whose true class is c
        predicted = counts.sum(axis=0)  # (C,) samples predicted as c
        n = counts.sum()
        true_negatives = n - support - predicted + tp
        scores = {
            "precision": _divide(tp, predicted),
            "recall": _divide(tp, support),
            "f1": _divide(2 * tp, support + predicted),  # = 2PR/(P+R), and 0 where P+R = 0, as in sklearn
            "accuracy": (tp + true_negatives) / n,  # one-vs-rest: the tutorial's per-class ACC
            "support": support,
        }
        return {key: _read_only(value) for key, value in scores.items()}

    @property
    def num_samples(self) -> int:
        """Total number of samples N counted in the matrix."""
        return int(self.counts.sum())

    @property
    def accuracy(self) -> float:
        """Overall accuracy: correct predictions / N."""
        return float(np.trace(self.counts) / self.counts.sum())

    @property
    def macro(self) -> dict[str, float]:
        """Unweighted means over all C classes of ``precision``, ``recall`` and ``f1``."""
        return {key: float(self._scores[key].mean()) for key in ("precision", "recall", "f1")}

    @property
    def weighted(self) -> dict[str, float]:
        """Means of ``precision``, ``recall`` and ``f1`` weighted by each class's support."""
        weights = self._scores["support"]
        return {key: float(np.average(self._scores[key], weights=weights)) for key in ("precision", "recall", "f1")}

    @property
    def matrix(self) -> pd.DataFrame:
        """Counts as an int64 DataFrame: index = true class names, columns = predicted class names."""
        return pd.DataFrame(
            self.counts,
            index=pd.Index(self.class_names, name="true"),
            columns=pd.Index(self.class_names, name="predicted"),
            copy=True,
        )

    @property
    def per_class(self) -> pd.DataFrame:
        """One row per class with columns ``precision, recall, f1, accuracy, support``."""
        data = {column: self._scores[column].copy() for column in SCORE_COLUMNS}
        return pd.DataFrame(data, index=pd.Index(self.class_names, name="class"))

    def table(self) -> pd.DataFrame:
        """`per_class` plus rows ``"macro avg"`` and ``"weighted avg"``.

        Both summary rows have support N. Their ``accuracy`` is NaN: the column is a per-class one-vs-rest
        accuracy, which has no meaningful average here; the overall accuracy is `accuracy`.
        """
        summary = pd.DataFrame(
            [
                {**self.macro, "accuracy": np.nan, "support": self.num_samples},
                {**self.weighted, "accuracy": np.nan, "support": self.num_samples},
            ],
            index=[MACRO_ROW, WEIGHTED_ROW],
        )
        table = pd.concat([self.per_class, summary[list(SCORE_COLUMNS)]])
        table.index.name = "class"
        return table

    def scalars(self) -> dict[str, float]:
        """The flat values the metric puts into ``engine.state.metrics``, keyed by the module's constants."""
        macro = self.macro
        return {
            ACCURACY: self.accuracy,
            PRECISION_MACRO: macro["precision"],
            RECALL_MACRO: macro["recall"],
            F1_MACRO: macro["f1"],
        }

    def _show_matrix(self, with_matrix: bool | None) -> bool:
        return len(self.class_names) <= MAX_PRINTED_MATRIX if with_matrix is None else with_matrix

    def _matrix_note(self) -> str:
        c = len(self.class_names)
        return f"confusion matrix: {c} x {c}, left out of the text (see report.matrix)"

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self, with_matrix: bool | None = None) -> str:
        """A plain-text report; `with_matrix` None shows the matrix only up to `MAX_PRINTED_MATRIX` classes."""
        table = self.table().to_string(float_format=lambda x: f"{x:.4f}", na_rep="")
        if self._show_matrix(with_matrix):
            head = "confusion matrix (rows: true class, columns: predicted class)\n" + self.matrix.to_string()
        else:
            head = self._matrix_note()
        return f"{head}\n\n{table}\n\naccuracy {self.accuracy:.4f} over {self.num_samples} samples"

    def to_markdown(self, with_matrix: bool | None = None) -> str:
        """The report as markdown tables; `with_matrix` as in `to_text`."""
        parts = [
            markdown_table(self.table(), "class"),
            f"**accuracy** {self.accuracy:.4f} over {self.num_samples} samples",
        ]
        if self._show_matrix(with_matrix):
            parts.append(markdown_table(self.matrix, "true \\ predicted"))
        else:
            parts.append(self._matrix_note())
        return "\n\n".join(parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassificationReport):
            return NotImplemented
        return self.class_names == other.class_names and np.array_equal(self.counts, other.counts)

    def __hash__(self) -> int:
        return hash((self.class_names, self.counts.tobytes()))


class ConfusionMatrixMetric(Metric):
    """An exact, distributed confusion matrix over named classes; `compute()` returns a `ClassificationReport`.

    ``update((y_pred, y))`` takes ``y_pred`` as scores (B, C) (logits or probabilities; the argmax is the
    prediction) or as predicted class indices (B,), and ``y`` as class indices (B,) of any integer dtype. Counts
    are int64 on the metric's `device`, summed over all processes in `compute()`, so every rank gets the same
    report; `state_dict()` / `load_state_dict()` carry them across a resume. Each batch costs O(B) and one
    host read for the range check of the indices (two when ``y_pred`` holds indices).

    Attached to an engine, it stores the report under its name (default `REPORT`) and the flat scalars
    `ACCURACY`, `PRECISION_MACRO`, `RECALL_MACRO` and `F1_MACRO` in ``engine.state.metrics``. It refuses to
    overwrite a key another metric or handler wrote: when that one runs first, the clash is raised at once;
    when it runs after this metric, the clash is raised the next time this metric completes.

    The scores follow scikit-learn with ``zero_division=0`` (see `ClassificationReport`): unlike the tutorial's
    ``MetricTracker``, classes without samples or predictions count as 0 in the macro means.

    Args:
        class_names: one unique name per class, in class-index order (see `read_label_map`).
        output_transform: maps the engine's output to ``(y_pred, y)``.
        device: where the counts live; inputs on another device are moved there.
    """

    _state_dict_all_req_keys = ("_counts",)  # Metric.state_dict() saves the counts, so a run can resume

    def __init__(
        self,
        class_names: Sequence[str],
        output_transform: Callable[[Any], Any] = lambda x: x,
        device: str | torch.device = torch.device("cpu"),
    ) -> None:
        # Set before Metric.__init__, which calls reset(), which needs the number of classes.
        self.class_names = _check_class_names(class_names)
        self.num_classes = len(self.class_names)
        self._published: dict[str, Any] = {}
        # "named": the report is not a Mapping, but never let ignite copy keys into state.metrics on its own.
        super().__init__(output_transform, device=device, metrics_result_mode="named")
        # Helpers for update(), kept between batches (they are not state, so reset() leaves them alone):
        # ones of the batch size, the source index_add_ needs per index (made again only when the batch size
        # changes; half the cost of expanding a 0-d one every batch); a 2-element buffer that receives the
        # bounds of each batch's indices (see _bounds()).
        self._ones = torch.ones(0, dtype=torch.int64, device=self._device)
        self._on_cpu = self._device.type == "cpu"
        self._bounds_buffer = torch.empty(2, dtype=torch.int64, device=self._device)
        self._bounds_out = (self._bounds_buffer[0], self._bounds_buffer[1])

    @reinit__is_reduced
    def reset(self) -> None:
        """Zero the counts (ignite calls this when each epoch starts)."""
        # Flat (C * C,), row-major: entry y * C + pred counts true class y predicted as pred. Flat, so that
        # update() indexes it directly; compute() reshapes it to (C, C).
        self._counts = torch.zeros(self.num_classes**2, dtype=torch.int64, device=self._device)

    @reinit__is_reduced
    def update(self, output: Sequence[Tensor]) -> None:
        """Count one batch ``(y_pred, y)``; a bad batch raises and leaves the counts unchanged."""
        y_pred, y = self._check_output(output)
        if y_pred.ndim == 2:
            # argmax where the scores are, so only B indices (not B x C scores) travel to the metric's device
            pred = self._to_device(y_pred.argmax(dim=1))  # (B,) int64, always in [0, C)
        else:
            pred = self._to_device(y_pred).long()  # int64: y * C + pred must not overflow a small integer type
            self._check_range(pred, "y_pred")
        y = self._to_device(y)
        if y.dtype != torch.int64:
            y = y.long()  # torch does not mix int64 with uint16/32/64 in one op
        index = pred.add(y, alpha=self.num_classes)  # (B,) y * C + pred
        # Check the index rather than y: with pred in [0, C), index is in [0, C * C) exactly when y is in
        # [0, C), so one reduction covers the targets; y itself is only looked at to name the bad values.
        low, high = self._bounds(index)
        if low < 0 or high >= self.num_classes**2:
            self._check_range(y, "y")  # raises
        if self._ones.numel() != index.numel():
            self._ones = torch.ones(index.numel(), dtype=torch.int64, device=self._device)
        self._counts.index_add_(0, index, self._ones)  # O(B), no C x C temporary

    @sync_all_reduce("_counts")
    def compute(self) -> ClassificationReport:
        """The report over every batch since `reset()`, on all processes together.

        Raises:
            NotComputableError: no process has counted a sample yet.
        """
        # sync_all_reduce sums a clone of _counts and restores the local one afterwards: computing never
        # changes the state, and the zero check below sees the global counts, so all ranks agree.
        counts = self._counts.cpu().numpy().reshape(self.num_classes, self.num_classes)
        if counts.sum() == 0:
            raise NotComputableError(
                "ConfusionMatrixMetric must have at least one example before it can be computed; "
                "call update() with a non-empty batch after reset()"
            )
        return ClassificationReport.from_counts(counts, self.class_names)  # copies the counts

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore counts saved by `state_dict()`, refusing counts made for a different number of classes."""
        super().load_state_dict(state_dict)  # ignite sets self._counts to the saved tensor itself
        counts, c = self._counts, self.num_classes
        if not isinstance(counts, Tensor) or counts.shape != (c * c,):
            self.reset()
            raise ValueError(
                f"state_dict holds counts of shape {tuple(getattr(counts, 'shape', ()))}, but this metric has {c} "
                f"classes and needs shape ({c * c},); hint: build the metric from the label map it was saved with"
            )
        # a private copy on the metric's device: updating must not write into the caller's state_dict
        self._counts = counts.to(device=self._device, dtype=torch.int64, copy=True)

    def attach(self, engine: Engine, name: str = REPORT, usage: str | MetricUsage = EpochWise()) -> None:
        """Attach to `engine`; the report goes to ``engine.state.metrics[name]``, the scalars beside it."""
        if name in (ACCURACY, PRECISION_MACRO, RECALL_MACRO, F1_MACRO):
            raise ValueError(
                f"metric name {name!r} collides with a scalar this metric publishes; "
                f"use another name, for example the default {REPORT!r}"
            )
        super().attach(engine, name, usage)

    def completed(self, engine: Engine, name: str) -> None:
        """Compute the report and put it and its flat scalars into ``engine.state.metrics``."""
        report = self.compute()
        values: dict[str, Any] = {**report.scalars(), name: report}
        metrics = engine.state.metrics
        # A key may hold what this metric wrote last time (next epoch, next evaluator run); anything else
        # there was written by someone else, and overwriting it would silently corrupt their result.
        clashes = [key for key in values if key in metrics and metrics[key] is not self._published.get(key, _UNSET)]
        if clashes:
            raise ValueError(
                f"ConfusionMatrixMetric {name!r} would overwrite engine.state.metrics keys {clashes} written by "
                f"another metric or handler; it publishes {list(values)}; hint: rename the other metric"
            )
        metrics.update(values)
        self._published = values

    def _check_output(self, output: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        if not isinstance(output, (tuple, list)) or len(output) != 2:
            raise ValueError(f"expected output (y_pred, y), got {type(output).__name__} {output!r:.80}")
        y_pred, y = output
        if not isinstance(y_pred, Tensor) or not isinstance(y, Tensor):
            raise TypeError(
                f"y_pred and y must be torch.Tensor, got {type(y_pred).__name__} and {type(y).__name__}; "
                "hint: torch.as_tensor(...)"
            )
        if y.ndim != 1 or y.dtype not in _INTEGER_DTYPES:
            raise ValueError(
                f"y must be integer class indices of shape (B,), got shape {tuple(y.shape)} and dtype {y.dtype}; "
                "hint: y.long() for whole-number floats, y.view(-1) for shape (B, 1)"
            )
        self._check_predictions(y_pred)
        if y_pred.shape[0] != y.shape[0]:
            raise ValueError(
                f"y_pred and y disagree on the batch size: y_pred has shape {tuple(y_pred.shape)}, "
                f"y has shape {tuple(y.shape)}; expected both to start with the same B"
            )
        return y_pred, y

    def _check_predictions(self, y_pred: Tensor) -> None:
        c = self.num_classes
        if y_pred.ndim == 2:
            if y_pred.shape[1] != c:
                raise ValueError(
                    f"y_pred has shape {tuple(y_pred.shape)} but the metric has {c} classes: expected "
                    f"({y_pred.shape[0]}, {c}); hint: the model's output size must match the label map"
                )
            if y_pred.dtype == torch.bool or y_pred.dtype.is_complex:
                raise ValueError(f"y_pred scores must be real numbers, got dtype {y_pred.dtype}")
        elif y_pred.ndim == 1:
            if y_pred.dtype not in _INTEGER_DTYPES:
                raise ValueError(
                    f"a 1-D y_pred must hold integer class indices, got dtype {y_pred.dtype}; "
                    f"hint: pass scores of shape (B, {c}) or y_pred.argmax(dim=1)"
                )
        else:
            raise ValueError(
                f"y_pred must have shape (B, {c}) (scores) or (B,) (class indices), got shape {tuple(y_pred.shape)}"
            )

    def _to_device(self, values: Tensor) -> Tensor:
        # Tensor.to() is a no-op when nothing changes, but still a dispatch: update() runs every batch.
        return values if self._on_cpu and values.is_cpu else values.to(self._device)

    def _bounds(self, values: Tensor) -> tuple[int, int]:
        """(min, max) of the integer tensor `values`; (0, 0) when it is empty."""
        if values.numel() == 0:
            return 0, 0  # aminmax refuses an empty tensor
        # One reduction per batch into a 2-element buffer, read with a single tolist(): on an accelerator this
        # is the one sync update() makes, the price of naming bad values at once rather than a device-side
        # assert or silently wrong counts. On CPU it is also cheaper than two .item() calls.
        torch.aminmax(values, out=self._bounds_out)
        low, high = self._bounds_buffer.tolist()
        return low, high

    def _check_range(self, values: Tensor, label: str) -> None:
        """Raise if the integer tensor `values` holds an index outside [0, C), naming the bad values."""
        c = self.num_classes
        low, high = self._bounds(values)
        if low < 0 or high >= c:
            bad = values[(values < 0) | (values >= c)].unique()[:10].tolist()
            raise ValueError(
                f"{label} holds class indices outside [0, {c}): {bad}; the metric has {c} classes "
                f"({', '.join(self.class_names[:5])}{', ...' if c > 5 else ''}); hint: check the label map"
            )
