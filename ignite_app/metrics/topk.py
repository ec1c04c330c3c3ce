"""Top-5 accuracy, for runs with more than 5 classes: ``val/top5_accuracy`` in the metrics, the summary line,
TensorBoard, ``history.csv`` and the run's final report.

It is ignite's ``TopKCategoricalAccuracy``: an exact count of the samples whose true class is among the 5 highest
scores, summed over processes (``sync_all_reduce``) before the division, so that every rank reports the value of
the whole validation set; it equals scikit-learn's ``top_k_accuracy_score``.
"""

from __future__ import annotations

import torch
from ignite.metrics import Metric, TopKCategoricalAccuracy

TOP_K = 5
TOP5_ACCURACY = "top5_accuracy"  # the evaluator's metric name; TensorBoard: val/top5_accuracy


def has_top_k(num_classes: int) -> bool:
    """Whether a run of ``num_classes`` classes reports top-5 accuracy (with 5 or fewer it is always 1)."""
    return num_classes > TOP_K


def top_k_metrics(num_classes: int, device: str | torch.device = "cpu") -> dict[str, Metric]:
    """``{"top5_accuracy": metric}`` with more than 5 classes, else nothing."""
    return {TOP5_ACCURACY: TopKCategoricalAccuracy(k=TOP_K, device=device)} if has_top_k(num_classes) else {}
