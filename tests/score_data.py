"""Test helper: probabilities and targets for the score metric, and scikit-learn's values for them."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import average_precision_score, roc_auc_score


def softmax_scores(n: int, c: int, seed: int, absent: tuple[int, ...] = (), scale: float = 1.5):
    """Continuous softmax probabilities (n, c) float32 and targets (n,) int64 that never use the `absent` classes."""
    generator = np.random.default_rng(seed)
    present = np.array([k for k in range(c) if k not in absent])
    y = generator.choice(present, size=n)
    logits = generator.normal(size=(n, c)) + scale * np.eye(c)[y]  # informative but overlapping
    return torch.from_numpy(logits).float().softmax(dim=1), torch.from_numpy(y)


def tied_scores(n: int, c: int, seed: int, absent: tuple[int, ...] = ()):
    """Probabilities k / 8 (k whole numbers summing to 8 per row): exact in float32, rows sum to 1, ties everywhere."""
    generator = np.random.default_rng(seed)
    present = np.array([k for k in range(c) if k not in absent])
    y = generator.choice(present, size=n)
    weights = np.ones(c) + 2 * np.eye(c)[y]  # the true class gets more eighths on average
    k = np.stack([generator.multinomial(8, w / w.sum()) for w in weights])
    return torch.from_numpy(k / 8).float(), torch.from_numpy(y)


def sklearn_ap_auc(probs: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's per-class one-vs-rest AP and ROC-AUC (NaN where undefined)."""
    p, t = probs.numpy(), y.numpy()
    c = p.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)  # "No positive class found in y_true"
        ap = average_precision_score(np.eye(c)[t], p, average=None)
        auc = roc_auc_score(t, p, multi_class="ovr", average=None, labels=range(c))
    return ap, auc


def batches(probs: torch.Tensor, y: torch.Tensor, sizes=(64, 1, 37, 0, 200)):
    """Split into batches of the given sizes in turn (including an empty one), then whatever is left."""
    out, start, i = [], 0, 0
    while start < len(y):
        size = sizes[i % len(sizes)]
        out.append((probs[start:start + size], y[start:start + size]))
        start, i = start + size, i + 1
    return out


def feed(metric, probs, y, sizes=(64, 1, 37, 0, 200)):
    """Update ``metric`` with (probs, y) in batches of ``sizes``; returns it."""
    for batch in batches(probs, y, sizes):
        metric.update(batch)
    return metric


def assert_same(a, b) -> None:
    """Two ScoreReports hold the same values, bit for bit."""
    assert a.mode == b.mode and a.class_names == b.class_names
    for name in ("ap", "roc_auc", "support", "bin_count", "bin_confidence", "bin_accuracy", "pr_counts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.ece == b.ece
    assert a.equals(b)
