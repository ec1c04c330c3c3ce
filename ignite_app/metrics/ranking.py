"""Tensor arithmetic behind the score metric: average precision and ROC-AUC per class, and the fixed bins.

Both exact scores and histogram scores come from one function, :func:`ranking_scores`, which reads a ranking as
*tie groups* in descending score order: a group is every sample with one score value (exact) or every sample in
one bin (histogram). Within a group positives and negatives are tied, as scikit-learn treats equal scores:

- average precision ``AP = sum_g (positives in g / P) * precision at the end of g`` (``average_precision_score``);
- ``ROC-AUC = (sum_g positives_g * (2 * negatives ranked below g + negatives_g)) / (2 * P * N)``: the
  Mann-Whitney statistic with ties counted half, which is the trapezoidal area ``roc_auc_score`` computes.

Counts are int64 and the AUC numerator is an exact integer, so the result depends only on the multiset of
(score, label) pairs, never on the order the samples arrived in: two processes give the bits one process gives.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CALIBRATION_BINS",
    "LOGIT_LIMIT",
    "PR_THRESHOLDS",
    "calibration_sums",
    "exact_ranking",
    "histogram_ranking",
    "logit_bins",
    "pr_buckets",
    "ranking_scores",
]

CALIBRATION_BINS = 15  # equal-width confidence bins of the expected calibration error (Guo et al., 2017)
PR_THRESHOLDS = 127  # TensorBoard's PR-curve thresholds (its default, and the most add_pr_curve_raw writes)
LOGIT_LIMIT = 16.0  # histogram bins cover logit(p) in [-16, 16]: p from 1.1e-7 to 1 - 1.1e-7


def _group_deltas(cumulative: Tensor, last: Tensor) -> Tensor:
    """What each tie group adds to a running count: at a group's last row, the count minus its value at the end
    of the previous group; 0 on every other row. Both arguments are (K, G), groups along dim 1."""
    at_last = torch.where(last, cumulative, 0)
    before = at_last.cummax(dim=1).values  # the count at the latest group end (counts never decrease)
    before = F.pad(before[:, :-1], (1, 0))  # ... strictly before this row
    return torch.where(last, cumulative - before, 0)


def ranking_scores(tp: Tensor, fp: Tensor, d_tp: Tensor, d_fp: Tensor) -> tuple[Tensor, Tensor]:
    """Average precision and ROC-AUC of K rankings from their counts, rows in descending score order.

    Args:
        tp: (K, G) int64, positives ranked at or above each row.
        fp: (K, G) int64, negatives ranked at or above each row.
        d_tp: (K, G) int64, the positives of each tie group, on the group's last row; 0 on its other rows.
        d_fp: (K, G) int64, the negatives of each tie group, placed as `d_tp`.

    Returns:
        ``(ap, auc)``, each (K,) float64. AP is 0 without positives (scikit-learn's value: recall is 1 at every
        threshold); AUC is NaN without positives or without negatives.
    """
    positives, negatives = tp[:, -1], fp[:, -1]  # (K,)
    precision = tp.double() / (tp + fp).clamp(min=1)  # only read where d_tp > 0, and there tp + fp >= 1
    ap = (d_tp * precision).sum(dim=1) / positives.clamp(min=1).double()
    # Twice the Mann-Whitney U, an exact integer: each positive beats the negatives ranked strictly below its group
    # and ties with half of those inside it.
    twice_u = (d_tp * (2 * (negatives[:, None] - fp) + d_fp)).sum(dim=1)
    pairs = positives * negatives
    auc = torch.where(pairs > 0, twice_u.double() / (2 * pairs).clamp(min=1).double(), torch.nan)
    return ap, auc


def exact_ranking(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """Exact AP and ROC-AUC of K classes, ties grouped as scikit-learn groups them.

    Args:
        scores: (K, N) float32 probabilities in [0, 1], one row per class.
        positive: (K, N) bool, whether each sample belongs to the row's class.

    Returns:
        ``(ap, auc)`` as :func:`ranking_scores`.
    """
    ranked = _sort_descending(_pack(scores, positive))  # (K, N): score bits and label, best first
    tp = (ranked & 1).cumsum(dim=1)  # (K, N) int64
    bits = ranked >> 1
    last = torch.ones_like(positive)
    last[:, :-1] = bits[:, 1:] != bits[:, :-1]
    fp = torch.arange(1, scores.shape[1] + 1, device=scores.device) - tp
    return ranking_scores(tp, fp, _group_deltas(tp, last), _group_deltas(fp, last))


def _pack(scores: Tensor, positive: Tensor) -> Tensor:
    """One int64 key per sample, ordered as the scores: the float32 bits (for floats >= 0 they order as integers)
    shifted left, the label in the lowest bit. Sorting keys alone needs no index array and no gather afterwards."""
    bits = (scores.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 (sign bit set) into 0.0
    return (bits.long() << 1) | positive


def _sort_descending(keys: Tensor) -> Tensor:
    """Sort each row, largest first. On the CPU numpy sorts: its SIMD sort of int64 is ~10x torch's here."""
    if keys.device.type == "cpu":
        return torch.from_numpy(-np.sort(-keys.numpy(), axis=1))
    return keys.sort(dim=1, descending=True).values


def histogram_ranking(positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
    """AP and ROC-AUC of K classes from per-bin counts, each bin one tie group.

    Args:
        positives: (K, bins) int64, positive samples per bin, bins in ascending score order.
        negatives: (K, bins) int64, negative samples per bin.
    """
    positives, negatives = positives.flip(1), negatives.flip(1)  # best first
    return ranking_scores(positives.cumsum(dim=1), negatives.cumsum(dim=1), positives, negatives)


def logit_bins(logits: Tensor, bins: int) -> Tensor:
    """Histogram bin (int32) of each ``logit(p)``, bins of equal width over ``[-LOGIT_LIMIT, LOGIT_LIMIT]``.

    Equal width in ``log(p / (1 - p))`` rather than in p: softmax scores crowd near 0 and 1, where equal-width bins
    would tie most negatives (near 0) and most positives (near 1). Values beyond the range go to the first or last
    bin; NaN (p NaN or outside [0, 1]) to the middle one: the caller counts those. `logits` is overwritten.
    """
    z = logits.nan_to_num_(nan=0.0)
    # int32: the caller adds offsets to these indices, and int64 arithmetic is several times slower on CPUs
    return z.add_(LOGIT_LIMIT).mul_(bins / (2 * LOGIT_LIMIT)).floor_().clamp_(0, bins - 1).int()


def pr_buckets(probs: Tensor, num_thresholds: int = PR_THRESHOLDS) -> Tensor:
    """TensorBoard's PR-curve bucket (int32) of each probability: ``floor(p * (num_thresholds - 1))`` in float32.

    The same float32 product as ``torch.utils.tensorboard.summary.compute_curve``, so that the counts equal what
    ``add_pr_curve`` would compute from the raw scores. Out-of-range values are clamped (the caller counts them).
    """
    product = probs.float().nan_to_num(nan=0.0) * (num_thresholds - 1)
    return product.floor_().clamp_(0, num_thresholds - 1).int()


def calibration_sums(confidence: Tensor, correct: Tensor) -> Tensor:
    """Per confidence bin: samples, correct predictions and summed confidence, as a (3, CALIBRATION_BINS) float64.

    Bin b holds confidences in ``(b / 15, (b + 1) / 15]`` exactly: a float32 times 15 is exact in float64, so
    ``ceil(15 * c) - 1`` never rounds across an edge. float64 holds the counts exactly up to 2**53. A NaN
    confidence is binned as 0 (the caller counts NaN scores and refuses them).
    """
    confidence = confidence.double().nan_to_num(nan=0.0)
    index = (confidence * CALIBRATION_BINS).ceil_().sub_(1).clamp_(0, CALIBRATION_BINS - 1).long()
    return torch.stack([
        torch.bincount(index, minlength=CALIBRATION_BINS).double(),
        torch.bincount(index, weights=correct.double(), minlength=CALIBRATION_BINS),
        torch.bincount(index, weights=confidence, minlength=CALIBRATION_BINS),
    ])
