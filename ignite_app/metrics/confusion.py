"""The confusion-matrix metric: exact int64 counts, reduced across processes, computed into a report.

`ConfusionMatrixMetric` accumulates an exact int64 confusion matrix (rows = true class, columns = predicted
class) and computes a :class:`~ignite_app.metrics.report.ClassificationReport` whose numbers equal scikit-learn's
`confusion_matrix` and `precision_recall_fscore_support(..., labels=range(C), zero_division=0)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import EpochWise, MetricUsage, reinit__is_reduced, sync_all_reduce
from torch import Tensor

from ignite_app.metrics.labelmap import check_class_names
from ignite_app.metrics.publish import check_metric_name, publish
from ignite_app.metrics.report import ACCURACY, F1_MACRO, PRECISION_MACRO, RECALL_MACRO, ClassificationReport
from ignite_app.metrics.score_report import AP_MACRO, ECE, ROC_AUC_MACRO

if TYPE_CHECKING:
    from ignite_app.metrics.scores import ScoreMetric

__all__ = ["REPORT", "ConfusionMatrixMetric"]

REPORT = "report"  # default name of the metric itself: the ClassificationReport is stored under it
_INTEGER_DTYPES = frozenset(
    {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32, torch.uint64}
)


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

    With ``scores``, a :class:`~ignite_app.metrics.scores.ScoreMetric` over the same classes, ``y_pred`` must be
    the batch's probabilities (B, C) (``logits.softmax(dim=1)``: the same arg-max as the logits); the metric feeds
    them to ``scores``, resets and computes it with the counts, and the report carries its
    :class:`~ignite_app.metrics.score_report.ScoreReport` (``report.scores``; ``per_class`` gains ``ap`` and
    ``roc_auc``) and publishes `AP_MACRO`, `ROC_AUC_MACRO` and `ECE` beside the other scalars. The scores are
    not part of `state_dict()` (a validation is run whole).

    Args:
        class_names: one unique name per class, in class-index order (see `read_label_map`).
        output_transform: maps the engine's output to ``(y_pred, y)``.
        device: where the counts live; inputs on another device are moved there.
        scores: also score the probabilities with this metric (not attached to an engine itself).
    """

    _state_dict_all_req_keys = ("_counts",)  # Metric.state_dict() saves the counts, so a run can resume

    def __init__(
        self,
        class_names: Sequence[str],
        output_transform: Callable[[Any], Any] = lambda x: x,
        device: str | torch.device = torch.device("cpu"),
        scores: ScoreMetric | None = None,
    ) -> None:
        # Set before Metric.__init__, which calls reset(), which needs the number of classes and the scores.
        self.class_names = check_class_names(class_names)
        self.num_classes = len(self.class_names)
        if scores is not None and scores.class_names != self.class_names:
            raise ValueError(f"scores is a ScoreMetric of classes {list(scores.class_names)[:5]}..., this metric's "
                             f"are {list(self.class_names)[:5]}...; build it with ScoreMetric(num_classes, "
                             "class_names) of the same classes")
        self.scores = scores
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
        if self.scores is not None:
            self.scores.reset()

    @reinit__is_reduced
    def update(self, output: Sequence[Tensor]) -> None:
        """Count one batch ``(y_pred, y)``; a bad batch raises and leaves the counts unchanged."""
        y_pred, y = self._check_output(output)
        if y.numel() == 0:  # every image of the batch left out as unreadable (--on-bad-image skip)
            return
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
        if self.scores is not None:  # before the counts: a batch it refuses changes neither
            self.scores.update((y_pred, y))
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
        scores = self.scores.compute() if self.scores is not None else None  # every rank: it gathers
        return ClassificationReport.from_counts(counts, self.class_names, scores)  # copies the counts

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
        check_metric_name(name, (ACCURACY, PRECISION_MACRO, RECALL_MACRO, F1_MACRO, AP_MACRO, ROC_AUC_MACRO, ECE),
                          REPORT)
        super().attach(engine, name, usage)

    def completed(self, engine: Engine, name: str) -> None:
        """Compute the report and put it and its flat scalars into ``engine.state.metrics``."""
        report = self.compute()
        self._published = publish(engine.state.metrics, {**report.scalars(), name: report}, self._published,
                                  f"ConfusionMatrixMetric {name!r}")

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
