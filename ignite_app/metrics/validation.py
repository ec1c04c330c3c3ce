"""The evaluator's metrics, built in one place for training and for ``scripts/evaluate.py``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from ignite.metrics import Metric
from torch import Tensor, nn

from ignite_app.metrics.confusion import REPORT, ConfusionMatrixMetric
from ignite_app.metrics.loss import ValidationLoss
from ignite_app.metrics.mistakes import MISTAKES, ConfidentMistakes
from ignite_app.metrics.report import VAL_LOSS
from ignite_app.metrics.scores import DEFAULT_MEMORY_BUDGET, ScoreMetric

__all__ = ["probabilities_and_targets", "validation_metrics"]


def probabilities_and_targets(output: Any) -> tuple[Tensor, Tensor]:
    """Output transform of the metrics that take probabilities, from the evaluator's
    :class:`~ignite_app.engines.EvalOutput` (the softmax computed once per batch)."""
    return output.probs, output.y


def validation_metrics(class_names: Sequence[str], loss_fn: nn.Module, device: torch.device, mistakes: int = 0,
                       score_memory_bytes: int = DEFAULT_MEMORY_BUDGET) -> dict[str, Metric]:
    """The validation loss (on the logits), the confusion-matrix report with its scores (on the probabilities:
    the same arg-max) and, with ``mistakes`` > 0, the most confident wrong predictions.

    Args:
        class_names: the classes, in class-index order.
        loss_fn: the training loss, computed on the logits.
        device: where the metrics accumulate.
        mistakes: how many confident mistakes to keep (0: none).
        score_memory_bytes: the score metric's budget for exact scores (see :class:`ScoreMetric`).
    """
    # on_invalid="nan": the probabilities of a diverged model are NaN; the run's finite-weights check says so,
    # naming the epoch, rather than the metric refusing them as logits passed by mistake
    scores = ScoreMetric(len(class_names), class_names, memory_budget_bytes=score_memory_bytes, device=device,
                         on_invalid="nan")
    metrics: dict[str, Metric] = {
        REPORT: ConfusionMatrixMetric(class_names, probabilities_and_targets, device=device, scores=scores),
        VAL_LOSS: ValidationLoss(loss_fn, device=device),  # passes over a batch whose images were all unreadable
    }
    if mistakes:
        metrics[MISTAKES] = ConfidentMistakes(mistakes)
    return metrics
