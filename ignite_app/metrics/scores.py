"""Scores of the probabilities themselves: average precision, ROC-AUC and calibration, exact across processes.

`ScoreMetric` takes the softmax of each validation batch and computes a `ScoreReport`:

- per class, one-vs-rest: average precision (equal to scikit-learn's ``average_precision_score``) and ROC-AUC
  (equal to ``roc_auc_score(y, probs, multi_class="ovr", average=None)``), with their macro means;
- the expected calibration error over 15 equal-width bins of the top-1 confidence, and its reliability table;
- per class, the PR-curve counts TensorBoard's ``add_pr_curve_raw`` takes (`ScoreReport.pr_curve`).

Two modes, chosen at ``compute()`` the same way on every process:

- **exact** while the scores of all processes together, N x C float32, fit in ``memory_budget_bytes`` (default
  256 MiB = 2**26 scores: ImageNet's 50,000 x 1,000 validation scores fit, and so do 6.7 million samples of 10
  classes). Each process keeps its scores (plus 8 bytes a sample for the targets); ``compute()`` gathers them
  (shards of different sizes are padded to the longest, gathered and trimmed) and ranks them with ties grouped as
  scikit-learn groups them, so 2 processes give exactly what 1 process gives, to the last bit.
- **histogram** above the budget: per class, counts of positive and negative scores in `bins` fixed bins (default
  2048, equal-width in logit space over logit(p) in [-16, 16]; 16 * C * bins bytes, 33 MB at C = 1000), summed
  over processes. AP and ROC-AUC then treat the samples of one bin as tied. Measured against scikit-learn
  (``benchmarks/score_metric.py``, 20,000 samples, C = 10 and 100, probabilities
  ``softmax(s * onehot(y) + t * N(0, 1))``): no error where no bin mixes positives and negatives of different
  scores (well separated, s = 8, t = 1; scores rounded to 0.01, one score a bin); otherwise (overlapping, s = 1,
  t = 1; confident with confident mistakes, s = 10, t = 3) at most 2.9e-3 in one class's AP, 2.0e-4 in one
  class's ROC-AUC, 1.1e-3 in mAP and 1.2e-5 in macro ROC-AUC; 4x the bins divides the error by about 3. The ECE
  and the PR curves do not depend on these bins: they are exact in both modes.

Per batch, ``update()`` copies the batch's probabilities and targets and reads nothing back to the host; all checks
of values (probabilities in [0, 1], labels in [0, C)) happen once, in ``compute()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import EpochWise, MetricUsage, reinit__is_reduced
from torch import Tensor

from ignite_app.metrics.publish import check_metric_name, publish
from ignite_app.metrics.ranking import (
    CALIBRATION_BINS,
    PR_THRESHOLDS,
    calibration_sums,
    exact_ranking,
    histogram_ranking,
    logit_bins,
    pr_buckets,
)
from ignite_app.metrics.score_report import (
    AP_MACRO,
    ECE,
    EXACT,
    HISTOGRAM,
    ROC_AUC_MACRO,
    PRCurve,
    ScoreReport,
    reliability_png,
)

__all__ = [
    "AP_MACRO",
    "ECE",
    "EXACT",
    "HISTOGRAM",
    "ROC_AUC_MACRO",
    "SCORES",
    "PRCurve",
    "ScoreMetric",
    "ScoreReport",
    "all_gather_rows",
    "reliability_png",
]

SCORES = "scores"  # default name of the metric: engine.state.metrics[SCORES] holds the ScoreReport

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of gathered N x C float32 scores; above it, histogram mode
DEFAULT_BINS = 2048  # histogram mode: 2 * C * 2048 int64 counts (33 MB at C = 1000); see the module docstring
_CHUNK_ELEMENTS = 2**19  # exact mode ranks this many scores at a time: ~60 MB of temporaries
_FLOAT32_BYTES = 4

_INTEGER_DTYPES = frozenset({torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})


class ScoreMetric(Metric):
    """AP, ROC-AUC and calibration of the validation probabilities; `compute()` returns a `ScoreReport`.

    ``update((probs, y))`` takes the batch's **probabilities** ``probs`` (B, C) float (the softmax the app computes
    once per batch and shares with its other metrics: logits are refused at ``compute()``) and the targets ``y``
    (B,) of an integer dtype. Attached to an engine, the report goes to ``engine.state.metrics[name]`` and its
    `scalars` (`AP_MACRO`, `ROC_AUC_MACRO`, `ECE`) beside it; keys another writer owns are never overwritten.

    Scores are kept and compared as float32 (values equal in float32 are tied). They stay on the metric's `device`
    until ``compute()``, which needs about twice the gathered scores in memory (the budget) while it gathers them,
    plus ~60 MB while it ranks them. The state is not saved by ``state_dict()``: a validation is run
    whole, and ``reset()`` (ignite calls it when each run starts) returns to exact mode.

    Args:
        num_classes: C, the width of ``probs``.
        class_names: one unique name per class; default ``"0"``, ``"1"``, ...
        memory_budget_bytes: the most bytes of N x C float32 scores, all processes together, that are kept for an
            exact result; above it, histogram mode. 0 always uses histograms.
        bins: histogram bins per class, equal-width in logit space; more bins cost ``16 * C`` bytes each and give
            a smaller error (see the module docstring).
        output_transform: maps the engine's output to ``(probs, y)``.
        device: where the scores and counts live; inputs on another device are copied there.
        on_invalid: what ``compute()`` does with scores that are not probabilities: ``"raise"`` a ValueError (they
            are logits, most likely), or ``"nan"``: a report of NaN scores (the app's evaluator: a diverged model's
            NaN probabilities, which its finite-weights check then reports).
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        bins: int = DEFAULT_BINS,
        output_transform: Callable[[Any], Any] = lambda x: x,
        device: str | torch.device = torch.device("cpu"),
        on_invalid: str = "raise",
    ) -> None:
        if on_invalid not in ("raise", "nan"):
            raise ValueError(f"on_invalid must be 'raise' or 'nan', got {on_invalid!r}")
        self.on_invalid = on_invalid
        # Set before Metric.__init__, which calls reset(), which needs them.
        self.num_classes = _check_int("num_classes", num_classes, minimum=1, hint="the model's output size")
        self.memory_budget_bytes = _check_int("memory_budget_bytes", memory_budget_bytes, minimum=0,
                                              hint="for example 256 * 2**20; 0 always uses histograms")
        self.bins = _check_int("bins", bins, minimum=2, hint=f"for example {DEFAULT_BINS}")
        c, t = self.num_classes, PR_THRESHOLDS
        if 2 * c * (self.bins + t) + 2 > torch.iinfo(torch.int32).max:
            raise ValueError(f"bins={self.bins} with {c} classes needs {2 * c * (self.bins + t) + 2} histogram "
                             "counts, more than int32 indices reach; hint: fewer bins")
        self.class_names = _check_class_names(class_names, c)
        self._published: dict[str, Any] = {}
        super().__init__(output_transform, device=device, metrics_result_mode="named")
        # Where each class's counts start in the flat histogram-mode counts (see _allocate for the layout); int32
        # like the bin indices they are added to.
        classes = torch.arange(c, dtype=torch.int32, device=self._device)
        self._rank_offsets = classes * self.bins
        self._pr_offsets = 2 * c * self.bins + classes * t
        self._ones = torch.ones(0, dtype=torch.int64, device=self._device)  # kept between batches of one size

    @reinit__is_reduced
    def reset(self) -> None:
        """Forget every score and count, back to exact mode (ignite calls this when each run starts)."""
        self._scores: list[Tensor] = []  # exact mode: this process's (B, C) float32 batches
        self._targets: list[Tensor] = []  # ... and their (B,) int64 targets
        self._stored_rows = 0
        self._seen_rows = 0
        self._dropped = False  # True once this process has binned its scores (histogram mode until reset)
        self._counts: Tensor | None = None  # histogram mode only (allocated on the switch; see _allocate)
        self._calibration: Tensor | None = None

    @reinit__is_reduced
    def update(self, output: Sequence[Tensor]) -> None:
        """Keep (exact mode) or bin (histogram mode) one batch ``(probs, y)``; no value is read back to the host."""
        probs, y = self._check_output(output)
        if y.numel() == 0:
            return
        # A private copy: the batch's tensors may be reused or changed after this call, and a view would keep its
        # whole base (a bigger buffer than the budget counts) alive.
        probs = probs.detach().to(self._device, torch.float32, copy=not self._dropped)
        y = y.detach().to(self._device, torch.int64, copy=True)
        self._seen_rows += y.numel()
        if self._dropped:
            self._bin(probs, y)
            return
        self._scores.append(probs)
        self._targets.append(y)
        self._stored_rows += y.numel()
        # This process alone is over the budget, so all of them together are: switch now rather than hold more.
        if self._stored_rows * self.num_classes * _FLOAT32_BYTES > self.memory_budget_bytes:
            self._drop()

    def compute(self) -> ScoreReport:
        """The report over every batch since `reset()`, on all processes together (every rank gets it).

        Raises:
            NotComputableError: no process has seen a sample.
            ValueError: a probability is outside [0, 1] (logits?) or NaN, or a target is outside [0, C).
        """
        stored, seen, dropped = self._gather_sizes()
        if sum(seen) == 0:
            raise NotComputableError("ScoreMetric must have at least one example before it can be computed; call "
                                     "update() with a non-empty batch after reset()")
        # The same sums on every rank, so every rank takes the same branch (and joins the same collectives).
        if any(dropped) or sum(stored) * self.num_classes * _FLOAT32_BYTES > self.memory_budget_bytes:
            return self._compute_histogram()
        return self._compute_exact(stored)

    def _gather_sizes(self) -> tuple[list[int], list[int], list[int]]:
        """Per rank: rows stored, rows seen, and whether it switched to histograms."""
        local = torch.tensor([self._stored_rows, self._seen_rows, int(self._dropped)], device=self._device)
        if idist.get_world_size() > 1:
            local = idist.all_gather(local)  # (world * 3,)
        stored, seen, dropped = local.view(-1, 3).T.tolist()
        return stored, seen, dropped

    def _compute_exact(self, stored: list[int]) -> ScoreReport:
        c = self.num_classes
        if len(self._scores) > 1:  # one tensor from now on: no second concatenation if compute() runs again
            self._scores, self._targets = [torch.cat(self._scores)], [torch.cat(self._targets)]
        scores = self._scores[0] if self._scores else torch.empty(0, c, device=self._device)
        targets = self._targets[0] if self._targets else torch.empty(0, dtype=torch.int64, device=self._device)
        if idist.get_world_size() > 1:
            scores, targets = all_gather_rows(scores, stored), all_gather_rows(targets, stored)
        bad_labels = int(((targets < 0) | (targets >= c)).sum())
        bad_probs = int((~((scores >= 0) & (scores <= 1))).sum())  # NaN fails both comparisons
        if self._check_values(bad_labels, bad_probs, scores.numel()):
            return self._invalid_report(EXACT, torch.bincount(targets, minlength=c))
        ap, auc, pr_counts = self._exact_per_class(scores, targets)
        confidence, predicted = scores.max(dim=1)
        # Sorted on the CPU: the float64 sums then depend only on the set of confidences, not on their order
        # (which differs between 1 and N processes), so the ECE is the same to the last bit.
        confidence, order = confidence.cpu().sort()
        calibration = calibration_sums(confidence, (predicted == targets).cpu()[order])
        support = torch.bincount(targets, minlength=c)
        return self._report(EXACT, ap, auc, support, pr_counts, calibration)

    def _exact_per_class(self, scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """AP (C,), ROC-AUC (C,) and PR counts (2, C, 127), a few classes at a time to bound the temporaries."""
        n, c = scores.shape
        step = max(1, _CHUNK_ELEMENTS // max(n, 1))
        aps, aucs, prs = [], [], []
        for start in range(0, c, step):
            classes = torch.arange(start, min(start + step, c), device=scores.device)
            block = scores[:, start:start + step].T.contiguous()  # (K, N): one row per class
            positive = targets[None, :] == classes[:, None]  # (K, N)
            ap, auc = exact_ranking(block, positive)
            aps.append(ap)
            aucs.append(auc)
            k = len(classes)
            index = pr_buckets(block) + torch.arange(k, device=block.device)[:, None] * PR_THRESHOLDS
            index += positive * (k * PR_THRESHOLDS)
            prs.append(torch.bincount(index.view(-1), minlength=2 * k * PR_THRESHOLDS).view(2, k, PR_THRESHOLDS))
        return torch.cat(aps), torch.cat(aucs), torch.cat(prs, dim=1)

    def _compute_histogram(self) -> ScoreReport:
        c, bins, t = self.num_classes, self.bins, PR_THRESHOLDS
        if not self._dropped:
            self._drop()  # for good: until reset(), the total only grows, so it stays over the budget
        if self._counts is None:
            self._allocate()  # a rank without samples still takes part in the sums
        counts, calibration = self._counts.clone(), self._calibration.clone()  # the sums must not land in the state
        if idist.get_world_size() > 1:
            counts, calibration = idist.all_reduce(counts), idist.all_reduce(calibration)
        binned = counts[:2 * c * bins].view(2, c, bins)  # [0] negatives, [1] positives
        bad_labels, bad_probs = counts[-2:].tolist()
        if self._check_values(bad_labels, bad_probs, int(calibration[0].sum()) * c):
            return self._invalid_report(HISTOGRAM, binned[1].sum(dim=1))
        ap, auc = histogram_ranking(binned[1], binned[0])
        pr_counts = counts[2 * c * bins:2 * c * (bins + t)].view(2, c, t)
        return self._report(HISTOGRAM, ap, auc, binned[1].sum(dim=1), pr_counts, calibration)

    def _report(self, mode: str, ap: Tensor, auc: Tensor, support: Tensor, pr_counts: Tensor,
                calibration: Tensor) -> ScoreReport:
        count, correct, confidence_sum = calibration.cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):  # empty bins: NaN, as "no value"
            accuracy, confidence = correct / count, confidence_sum / count
        return ScoreReport(
            class_names=self.class_names, mode=mode, ap=ap.cpu().numpy(), roc_auc=auc.cpu().numpy(),
            support=support.cpu().numpy(), ece=float(np.abs(correct - confidence_sum).sum() / count.sum()),
            bin_count=count, bin_confidence=confidence, bin_accuracy=accuracy, pr_counts=pr_counts.cpu().numpy(),
        )

    def _allocate(self) -> None:
        # One flat int64 tensor, so that one all_reduce sums it all: [rank-bin negatives (C * bins) | positives
        # (C * bins) | PR-bucket negatives (C * 127) | positives (C * 127) | bad labels | bad probabilities].
        size = 2 * self.num_classes * (self.bins + PR_THRESHOLDS) + 2
        self._counts = torch.zeros(size, dtype=torch.int64, device=self._device)
        self._calibration = torch.zeros(3, CALIBRATION_BINS, dtype=torch.float64, device=self._device)

    def _drop(self) -> None:
        """Switch this process to histogram mode: bin the stored batches, then free them."""
        self._dropped = True
        for probs, y in zip(self._scores, self._targets):
            self._bin(probs, y)
        self._scores, self._targets, self._stored_rows = [], [], 0

    def _bin(self, probs: Tensor, y: Tensor) -> None:
        """Add one batch to the histogram-mode counts (O(B * C), no host sync)."""
        if self._counts is None:
            self._allocate()
        c = self.num_classes
        own = y.clamp(0, c - 1)[:, None]  # (B, 1); a bad label is counted below and raises in compute()
        logits = torch.logit(probs)  # (B, C)
        bad_probs = logits.isnan().sum()  # NaN exactly where p is NaN or outside [0, 1]
        self._tally(logit_bins(logits, self.bins) + self._rank_offsets, own, c * self.bins)
        self._tally(pr_buckets(probs) + self._pr_offsets, own, c * PR_THRESHOLDS)
        bad_labels = ((y < 0) | (y >= c)).sum()
        self._counts[-2:] += torch.stack([bad_labels, bad_probs])
        confidence, predicted = probs.max(dim=1)
        self._calibration += calibration_sums(confidence, predicted == y)

    def _tally(self, index: Tensor, own: Tensor, positive_offset: int) -> None:
        """Count every score (B, C) as a negative of its class, then move each sample's own class to positives."""
        flat = index.view(-1)
        if self._ones.numel() != flat.numel():
            self._ones = torch.ones(flat.numel(), dtype=torch.int64, device=self._device)
        self._counts.index_add_(0, flat, self._ones)
        mine = index.gather(1, own).squeeze(1)  # (B,) the negative count of each sample's own class
        b = mine.numel()
        moves = torch.ones(2 * b, dtype=torch.int64, device=self._device)
        moves[:b] = -1
        self._counts.index_add_(0, torch.cat([mine, mine + positive_offset]), moves)

    def _invalid_report(self, mode: str, support: Tensor) -> ScoreReport:
        """``on_invalid="nan"``: the report of scores that are not probabilities (a diverged model's NaN)."""
        c, nan = self.num_classes, np.full(self.num_classes, np.nan)
        empty = np.full(CALIBRATION_BINS, np.nan)
        return ScoreReport(class_names=self.class_names, mode=mode, ap=nan, roc_auc=nan, support=support.cpu().numpy(),
                           ece=float("nan"), bin_count=np.zeros(CALIBRATION_BINS, np.int64), bin_confidence=empty,
                           bin_accuracy=empty, pr_counts=np.zeros((2, c, PR_THRESHOLDS), np.int64))

    def _check_values(self, bad_labels: int, bad_probs: int, num_scores: int) -> bool:
        """Raise for targets outside [0, C); for scores that are not probabilities, raise or (``on_invalid="nan"``)
        return True."""
        if bad_labels:
            raise ValueError(f"{bad_labels} targets are outside [0, {self.num_classes}): y must hold class indices "
                             "of the metric's classes; hint: check num_classes against the label map")
        if bad_probs and self.on_invalid == "nan":
            return True
        if bad_probs:
            raise ValueError(f"{bad_probs} of {num_scores} scores are not probabilities (outside [0, 1] or NaN); "
                             "ScoreMetric takes the softmax of the logits: pass (logits.softmax(dim=1), y)")
        return False

    def attach(self, engine: Engine, name: str = SCORES, usage: str | MetricUsage = EpochWise()) -> None:
        """Attach to `engine`; the report goes to ``engine.state.metrics[name]``, the scalars beside it."""
        check_metric_name(name, (AP_MACRO, ROC_AUC_MACRO, ECE), SCORES)
        super().attach(engine, name, usage)

    def completed(self, engine: Engine, name: str) -> None:
        """Compute the report and put it and its scalars into ``engine.state.metrics``."""
        report = self.compute()
        self._published = publish(engine.state.metrics, {**report.scalars(), name: report}, self._published,
                                  f"ScoreMetric {name!r}")

    def _check_output(self, output: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        if not isinstance(output, (tuple, list)) or len(output) != 2:
            raise ValueError(f"expected output (probs, y), got {type(output).__name__} {output!r:.80}")
        probs, y = output
        if not isinstance(probs, Tensor) or not isinstance(y, Tensor):
            raise TypeError(f"probs and y must be torch.Tensor, got {type(probs).__name__} and "
                            f"{type(y).__name__}; hint: torch.as_tensor(...)")
        c = self.num_classes
        if probs.ndim != 2 or probs.shape[1] != c or not probs.dtype.is_floating_point:
            raise ValueError(f"probs must be float probabilities of shape (B, {c}), got shape {tuple(probs.shape)} "
                             f"and dtype {probs.dtype}; hint: pass logits.softmax(dim=1)")
        if y.ndim != 1 or y.dtype not in _INTEGER_DTYPES:
            raise ValueError(f"y must be integer class indices of shape (B,), got shape {tuple(y.shape)} and dtype "
                             f"{y.dtype}; hint: y.long() for whole-number floats, y.view(-1) for shape (B, 1)")
        if probs.shape[0] != y.shape[0]:
            raise ValueError(f"probs and y disagree on the batch size: shapes {tuple(probs.shape)} and "
                             f"{tuple(y.shape)}; expected both to start with the same B")
        return probs, y


def all_gather_rows(tensor: Tensor, rows: list[int]) -> Tensor:
    """Every rank's `tensor` concatenated along dim 0 in rank order; rank r holds ``rows[r]`` rows.

    ``idist.all_gather`` needs one shape on every rank: pad each shard to the longest, gather, trim. (ignite's
    ``all_gather_tensors_with_shapes`` does the same, but indexes with a list, which the pinned torch deprecates.)
    """
    longest = max(rows)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[:len(tensor)] = tensor
    gathered = idist.all_gather(padded)  # (world * longest, ...)
    return torch.cat([gathered[r * longest:r * longest + n] for r, n in enumerate(rows)])




def _check_int(name: str, value: Any, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}; hint: {hint}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}; hint: {hint}")
    return int(value)


def _check_class_names(names: Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
    if names is None:
        return tuple(str(i) for i in range(num_classes))
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TypeError(f"class_names must be a sequence of names such as ['cat', 'dog'], got "
                        f"{type(names).__name__} {names!r:.80}")
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names but num_classes is {num_classes}; give one name per "
                         "class, in class-index order")
    if not all(isinstance(name, str) and name.strip() for name in names) or len(set(names)) != len(names):
        raise ValueError(f"class_names must be unique, non-blank strings, got {list(names)!r:.200}")
    return tuple(names)
