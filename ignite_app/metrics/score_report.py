"""What the score metric computes: `ScoreReport` (AP, ROC-AUC, calibration, PR curves) and its reliability diagram.

The report is plain data (read-only numpy arrays) so that it can be logged, written to files or kept in a
checkpoint without torch; `ignite_app.metrics.scores.ScoreMetric` builds it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ignite_app.metrics.ranking import CALIBRATION_BINS, PR_THRESHOLDS

__all__ = ["AP_MACRO", "ECE", "EXACT", "HISTOGRAM", "ROC_AUC_MACRO", "PRCurve", "ScoreReport", "reliability_png"]

# Keys of `engine.state.metrics` for the report's scalars (ScoreReport.scalars()).
AP_MACRO = "ap_macro"
ROC_AUC_MACRO = "roc_auc_macro"
ECE = "ece"
EXACT, HISTOGRAM = "exact", "histogram"  # ScoreReport.mode

_DPI = 100


class PRCurve(NamedTuple):
    """One class's PR curve at thresholds ``i / (num_thresholds - 1)``, in ``add_pr_curve_raw``'s argument order:
    ``writer.add_pr_curve_raw(tag, *curve, global_step=step, num_thresholds=len(curve.tp))``."""

    tp: np.ndarray
    fp: np.ndarray
    tn: np.ndarray
    fn: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


def _read_only(array: Any, dtype: Any) -> np.ndarray:
    array = np.array(array, dtype=dtype)  # a private copy
    array.flags.writeable = False
    return array


# The report's arrays and their dtypes (state_dict() stores them as tensors)
_ARRAYS = {"ap": np.float64, "roc_auc": np.float64, "support": np.int64, "bin_count": np.int64,
           "bin_confidence": np.float64, "bin_accuracy": np.float64, "pr_counts": np.int64}


@dataclass(frozen=True, eq=False)
class ScoreReport:
    """AP, ROC-AUC and calibration of one validation; every array is a read-only copy.

    Attributes:
        class_names: the C class names, in class-index order.
        mode: ``"exact"`` (scores gathered) or ``"histogram"`` (binned scores; their error is stated in the
            docstring of the `scores` module).
        ap: (C,) average precision per class; 0 for a class without positives (scikit-learn's value), which counts
            in `ap_macro`.
        roc_auc: (C,) ROC-AUC per class; NaN for a class without positives or without negatives, left out of
            `roc_auc_macro` (`roc_auc_left_out` says how many).
        support: (C,) int64, samples of each class.
        ece: expected calibration error: ``sum_b n_b / N * |accuracy_b - confidence_b|`` over 15 equal-width bins
            of the top-1 probability, bin b holding confidences in ``(b / 15, (b + 1) / 15]``.
        bin_count: (15,) int64, samples per confidence bin.
        bin_confidence: (15,) mean top-1 probability per bin (NaN where empty).
        bin_accuracy: (15,) fraction of correct top-1 predictions per bin (NaN where empty).
        pr_counts: (2, C, 127) int64: negatives [0] and positives [1] of each class per TensorBoard PR bucket
            ``floor(p * 126)``; `pr_curve` turns them into curves.
    """

    class_names: tuple[str, ...]
    mode: str
    ap: np.ndarray
    roc_auc: np.ndarray
    support: np.ndarray
    ece: float
    bin_count: np.ndarray
    bin_confidence: np.ndarray
    bin_accuracy: np.ndarray
    pr_counts: np.ndarray

    def __post_init__(self) -> None:
        for name, dtype in _ARRAYS.items():
            object.__setattr__(self, name, _read_only(getattr(self, name), dtype))
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def num_samples(self) -> int:
        """N, the samples scored."""
        return int(self.support.sum())

    @property
    def ap_macro(self) -> float:
        """Mean AP over all C classes (mAP)."""
        return float(self.ap.mean())

    @property
    def roc_auc_left_out(self) -> int:
        """How many classes have no ROC-AUC (no positives or no negatives)."""
        return int(np.isnan(self.roc_auc).sum())

    @property
    def roc_auc_macro(self) -> float:
        """Mean ROC-AUC over the classes that have one; NaN if none has."""
        defined = self.roc_auc[~np.isnan(self.roc_auc)]
        return float(defined.mean()) if defined.size else float("nan")

    @property
    def per_class(self) -> pd.DataFrame:
        """One row per class: ``ap``, ``roc_auc``, ``support``."""
        data = {"ap": self.ap.copy(), "roc_auc": self.roc_auc.copy(), "support": self.support.copy()}
        return pd.DataFrame(data, index=pd.Index(self.class_names, name="class"))

    @property
    def reliability(self) -> pd.DataFrame:
        """The reliability table: one row per confidence bin, ``lower, upper, count, confidence, accuracy``."""
        edges = np.arange(CALIBRATION_BINS + 1) / CALIBRATION_BINS
        return pd.DataFrame(
            {"lower": edges[:-1], "upper": edges[1:], "count": self.bin_count.copy(),
             "confidence": self.bin_confidence.copy(), "accuracy": self.bin_accuracy.copy()},
            index=pd.RangeIndex(CALIBRATION_BINS, name="bin"),
        )

    def state_dict(self) -> dict[str, Any]:
        """The report as plain values and tensors, loadable with ``torch.load(..., weights_only=True)``: a training
        checkpoint carries the best epoch's and the last validation's reports in this form."""
        import torch  # the report itself needs no torch; only its checkpoint form does

        state: dict[str, Any] = {"class_names": list(self.class_names), "mode": self.mode, "ece": self.ece}
        state.update({name: torch.from_numpy(getattr(self, name).copy()) for name in _ARRAYS})
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ScoreReport:
        """Rebuild a report from :meth:`state_dict` output."""
        arrays = {name: np.asarray(state[name].numpy() if hasattr(state[name], "numpy") else state[name])
                  for name in _ARRAYS}
        return cls(class_names=tuple(state["class_names"]), mode=str(state["mode"]), ece=float(state["ece"]),
                   **arrays)

    def equals(self, other: ScoreReport) -> bool:
        """Whether `other` holds the same values, bit for bit (NaN equal to NaN)."""
        return (self.class_names == other.class_names and self.mode == other.mode
                and (self.ece == other.ece or (np.isnan(self.ece) and np.isnan(other.ece)))
                and all(np.array_equal(getattr(self, name), getattr(other, name), equal_nan=dtype is np.float64)
                        for name, dtype in _ARRAYS.items()))

    def scalars(self) -> dict[str, float]:
        """The flat values the metric puts into ``engine.state.metrics``."""
        return {AP_MACRO: self.ap_macro, ROC_AUC_MACRO: self.roc_auc_macro, ECE: self.ece}

    def worst_classes(self, count: int) -> list[int]:
        """The indices of the `count` classes of lowest AP, lowest first (ties: lower index first)."""
        return np.argsort(self.ap, kind="stable")[:max(count, 0)].tolist()

    def pr_curve(self, class_index: int, num_thresholds: int = PR_THRESHOLDS) -> PRCurve:
        """The PR curve of one class as TensorBoard's ``add_pr_curve`` would compute it from the raw scores.

        Equal to ``torch.utils.tensorboard.summary.compute_curve`` at 127 and 64 thresholds. Fewer thresholds merge
        buckets: ``num_thresholds - 1`` must divide 126; at 43 thresholds and below, a score within one float32 ulp
        of a threshold may fall on its other side.

        Raises:
            IndexError: `class_index` is not a class of the report.
            ValueError: `num_thresholds` is not one of the values above.
        """
        c = len(self.class_names)
        if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)) \
                or not 0 <= class_index < c:
            raise IndexError(f"class_index must be an int in [0, {c}), got {class_index!r}")
        valid = [k + 1 for k in range(1, PR_THRESHOLDS) if (PR_THRESHOLDS - 1) % k == 0]
        if num_thresholds not in valid:
            raise ValueError(f"num_thresholds must be one of {valid} (buckets of the {PR_THRESHOLDS} kept), "
                             f"got {num_thresholds!r}")
        counts = self.pr_counts[:, class_index]  # (2, 127); the last bucket holds p = 1 alone
        merged = counts[:, :-1].reshape(2, num_thresholds - 1, -1).sum(axis=2)  # bucket u -> u // k
        negatives, positives = np.concatenate([merged, counts[:, -1:]], axis=1).astype(np.float64)
        return _curve(positives, negatives)

    def __str__(self) -> str:
        left_out = f" ({self.roc_auc_left_out} of {len(self.class_names)} classes left out)" \
            if self.roc_auc_left_out else ""
        return (f"mAP {self.ap_macro:.4f}, ROC-AUC {self.roc_auc_macro:.4f}{left_out}, ECE {self.ece:.4f} over "
                f"{self.num_samples} samples ({self.mode})")


def _curve(positives: np.ndarray, negatives: np.ndarray) -> PRCurve:
    """TensorBoard's ``compute_curve`` from per-bucket counts (ascending buckets, the last one p = 1)."""
    tp = np.cumsum(positives[::-1])[::-1]
    fp = np.cumsum(negatives[::-1])[::-1]
    tn, fn = fp[0] - fp, tp[0] - tp
    minimum = 1e-7  # TensorBoard's _MINIMUM_COUNT
    return PRCurve(tp, fp, tn, fn, tp / np.maximum(minimum, tp + fp), tp / np.maximum(minimum, tp + fn))


_AXES_BOX = (0.17, 0.14, 0.78, 0.74)  # fixed margins: tight_layout would cost more than the drawing
ACCURACY_COLOR, GAP_COLOR, GAP_ALPHA = "#1f77b4", "#d62728", 0.35


def reliability_figure(report: ScoreReport | None, title: str = "", size: int = 320) -> Any:
    """Draw `report`'s reliability diagram on a new `size` x `size` Agg figure: accuracy per confidence bin against
    the diagonal of perfect calibration, the gap to each bin's mean confidence shaded. Without a report: the
    empty frame (axes, diagonal, legend) that :mod:`ignite_app.reporting.reliability` paints the bars into.

    matplotlib is imported here (the metric does not need it) and used through its object API on the Agg canvas:
    no display, no pyplot state shared between threads.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(size / _DPI, size / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes(_AXES_BOX)
    if report is not None:
        left = np.arange(CALIBRATION_BINS) / CALIBRATION_BINS
        filled = report.bin_count > 0
        accuracy, confidence = report.bin_accuracy[filled], report.bin_confidence[filled]
        width = 1 / CALIBRATION_BINS
        ax.bar(left[filled], accuracy, width=width, align="edge", color=ACCURACY_COLOR, edgecolor="white",
               linewidth=0.75)
        ax.bar(left[filled], np.abs(confidence - accuracy), bottom=np.minimum(confidence, accuracy), width=width,
               align="edge", color=GAP_COLOR, alpha=GAP_ALPHA, edgecolor=GAP_COLOR, linewidth=0.75)
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-1 probability)", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(handles=[Patch(color=ACCURACY_COLOR, label="accuracy"),
                       Patch(facecolor=GAP_COLOR, alpha=GAP_ALPHA, edgecolor=GAP_COLOR, label="gap to confidence")],
              loc="upper left", fontsize=7, framealpha=1)
    ax.set_title(title, fontsize=9)
    return fig


def reliability_png(report: ScoreReport, title: str | None = None, size: int = 320) -> bytes:
    """:func:`reliability_figure` as an RGB PNG, by default titled with the ECE and the number of samples. About
    60-150 ms of matplotlib; the training run's TensorBoard image is painted in a few ms instead
    (:func:`ignite_app.reporting.reliability.reliability_image`)."""
    from PIL import Image

    fig = reliability_figure(report, title if title is not None else
                             f"ECE {report.ece:.4f}, {report.num_samples} samples", size)
    fig.canvas.draw()
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]).save(buffer, format="PNG")
    return buffer.getvalue()
