"""The training loss: cross-entropy with label smoothing (``--label-smoothing``) and class weights
(``--class-weights balanced``), on class indices or on soft targets (mixed batches).

The validation loss stays plain cross-entropy (the evaluator's own ``Loss`` metric), so that runs with and without
these options compare on the same scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def soft_targets(y: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    """One-hot targets (B, C) with ``smoothing`` spread evenly over the classes: ``(1 - s) * onehot + s / C``."""
    target = F.one_hot(y.long(), num_classes).float()  # (B, C)
    return target * (1.0 - smoothing) + smoothing / num_classes if smoothing else target


def balanced_class_weights(labels: Tensor, num_classes: int) -> Tensor:
    """scikit-learn's ``class_weight="balanced"``: ``N / (C x count)`` per class (a class without samples gets 0:
    no sample of it can be weighted)."""
    counts = torch.bincount(labels.long(), minlength=num_classes).double()
    present = int((counts > 0).sum())
    weights = torch.where(counts > 0, len(labels) / (present * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights.float()


class TrainingLoss(nn.Module):
    """Cross-entropy on logits (B, C) and targets that are class indices (B,) or probabilities (B, C).

    With class indices, torch's ``cross_entropy`` applies the label smoothing and the weights (the weighted mean
    divides by the targets' total weight); soft targets (:class:`~ignite_app.recipe.mixing.BatchMixer`) carry their
    smoothing already and are weighted per class, averaged over the batch. Without smoothing and weights it is
    exactly ``nn.CrossEntropyLoss()``.

    Args:
        smoothing: the label smoothing of class-index targets.
        weight: per-class weights (C,), or ``None``.
    """

    def __init__(self, smoothing: float = 0.0, weight: Tensor | None = None) -> None:
        super().__init__()
        self.smoothing = smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if target.is_floating_point():
            return F.cross_entropy(logits, target, weight=self.weight)
        return F.cross_entropy(logits, target, weight=self.weight, label_smoothing=self.smoothing)
