"""The per-class report computed from a confusion matrix: precision, recall, F1, one-vs-rest accuracy, support."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ignite_app.metrics.labelmap import check_class_names

if TYPE_CHECKING:
    from ignite_app.metrics.score_report import ScoreReport

__all__ = ["VAL_LOSS", "ACCURACY", "F1_MACRO", "MACRO_ROW", "MAX_PRINTED_MATRIX", "PRECISION_MACRO", "RECALL_MACRO", "SCORE_COLUMNS",
           "RANKING_COLUMNS", "WEIGHTED_ROW", "ClassificationReport", "markdown_table"]

# Keys of `engine.state.metrics`; the rest of the app (checkpointing, TensorBoard) refers to these names.
ACCURACY = "accuracy"
VAL_LOSS = "loss"  # the evaluator's ignite Loss metric (cross-entropy), beside the report's scores
PRECISION_MACRO = "precision_macro"
RECALL_MACRO = "recall_macro"
F1_MACRO = "f1_macro"

SCORE_COLUMNS = ("precision", "recall", "f1", "accuracy", "support")  # the columns of per_class and table()
RANKING_COLUMNS = ("ap", "roc_auc")  # inserted before "support" when the report carries a ScoreReport
MACRO_ROW = "macro avg"  # the two summary rows table() appends to the per-class rows
WEIGHTED_ROW = "weighted avg"
MAX_PRINTED_MATRIX = 30  # str() and to_markdown() leave out larger matrices: 1000 x 1000 cells help nobody



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
        scores: the same samples' average precision, ROC-AUC and calibration
            (:class:`~ignite_app.metrics.score_report.ScoreReport`), when the metric that made the report scored
            the probabilities too; `per_class`, `table`, `scalars` and the text then include them.
    """

    class_names: tuple[str, ...]
    counts: np.ndarray = field(repr=False)
    _scores: dict[str, np.ndarray] = field(init=False, repr=False)
    scores: ScoreReport | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        names = check_class_names(self.class_names)
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
        if self.scores is not None and (self.scores.class_names != names
                                        or self.scores.num_samples != counts.sum()):
            raise ValueError(f"scores cover {self.scores.num_samples} samples of classes "
                             f"{list(self.scores.class_names)[:5]}..., the counts {counts.sum()} samples of "
                             f"{list(names)[:5]}...; both must come from the same validation")

    @classmethod
    def from_counts(cls, counts: Any, class_names: Sequence[str],
                    scores: ScoreReport | None = None) -> ClassificationReport:
        """Build a report from a (C, C) count matrix (numpy array, CPU tensor or nested lists; rows = truth)."""
        return cls(class_names=tuple(class_names), counts=np.asarray(counts), scores=scores)

    def with_scores(self, scores: ScoreReport | None) -> ClassificationReport:
        """This report with `scores` (the same validation's AP, ROC-AUC and calibration) attached."""
        return replace(self, scores=scores)

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of `per_class` and `table`: `SCORE_COLUMNS`, with `RANKING_COLUMNS` before ``support``
        when the report carries scores."""
        if self.scores is None:
            return SCORE_COLUMNS
        return (*SCORE_COLUMNS[:-1], *RANKING_COLUMNS, SCORE_COLUMNS[-1])

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
        """One row per class with columns ``precision, recall, f1, accuracy, support``; with `scores`, also
        ``ap`` and ``roc_auc`` (NaN for a class without positives or negatives) before ``support``."""
        data = {column: self._scores[column].copy() for column in SCORE_COLUMNS}
        if self.scores is not None:
            data.update(ap=self.scores.ap.copy(), roc_auc=self.scores.roc_auc.copy())
        return pd.DataFrame({column: data[column] for column in self.columns},
                            index=pd.Index(self.class_names, name="class"))

    def table(self) -> pd.DataFrame:
        """`per_class` plus rows ``"macro avg"`` and ``"weighted avg"``.

        Both summary rows have support N. Their ``accuracy`` is NaN: the column is a per-class one-vs-rest
        accuracy, which has no meaningful average here; the overall accuracy is `accuracy`. With `scores`, the
        macro row's ``ap`` is the mAP and its ``roc_auc`` the mean over the classes that have one; the weighted
        row weighs both by support (the classes without a ROC-AUC left out).
        """
        macro: dict[str, float] = {**self.macro, "accuracy": np.nan, "support": self.num_samples}
        weighted: dict[str, float] = {**self.weighted, "accuracy": np.nan, "support": self.num_samples}
        if self.scores is not None:
            support, auc = self.scores.support, self.scores.roc_auc
            defined = ~np.isnan(auc) & (support > 0)
            macro.update(ap=self.scores.ap_macro, roc_auc=self.scores.roc_auc_macro)
            weighted.update(ap=float(np.average(self.scores.ap, weights=support)),
                            roc_auc=float(np.average(auc[defined], weights=support[defined]))
                            if defined.any() else np.nan)
        summary = pd.DataFrame([macro, weighted], index=[MACRO_ROW, WEIGHTED_ROW])
        table = pd.concat([self.per_class, summary[list(self.columns)]])
        table.index.name = "class"
        return table

    def scalars(self) -> dict[str, float]:
        """The flat values the metric puts into ``engine.state.metrics``, keyed by the module's constants."""
        macro = self.macro
        scalars = {
            ACCURACY: self.accuracy,
            PRECISION_MACRO: macro["precision"],
            RECALL_MACRO: macro["recall"],
            F1_MACRO: macro["f1"],
        }
        if self.scores is not None:  # ap_macro, roc_auc_macro, ece
            scalars.update(self.scores.scalars())
        return scalars

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
        text = f"{head}\n\n{table}\n\naccuracy {self.accuracy:.4f} over {self.num_samples} samples"
        return text if self.scores is None else f"{text}\n{self.scores}"

    def to_markdown(self, with_matrix: bool | None = None) -> str:
        """The report as markdown tables; `with_matrix` as in `to_text`."""
        parts = [
            markdown_table(self.table(), "class"),
            f"**accuracy** {self.accuracy:.4f} over {self.num_samples} samples",
        ]
        if self.scores is not None:
            parts.append(str(self.scores))
        if self._show_matrix(with_matrix):
            parts.append(markdown_table(self.matrix, "true \\ predicted"))
        else:
            parts.append(self._matrix_note())
        return "\n\n".join(parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassificationReport):
            return NotImplemented
        return (self.class_names == other.class_names and np.array_equal(self.counts, other.counts)
                and _same_scores(self.scores, other.scores))

    def __hash__(self) -> int:
        return hash((self.class_names, self.counts.tobytes()))


def _same_scores(a: ScoreReport | None, b: ScoreReport | None) -> bool:
    return a is b if a is None or b is None else a.equals(b)
