"""Time one confusion-matrix update per batch: this project's metric against the alternatives.

20,000 random predictions (fixed seed) in batches of 256, for C = 10, 100 and 1000 classes. Every
implementation gets the same logits (B, C) and targets (B,); each is warmed up with one pass, then timed
over several passes (median of the per-pass mean ms per batch). Every resulting matrix is checked against
scikit-learn's. Prints a markdown table and whether ConfusionMatrixMetric met its targets (exit status 1
if not).

    .venv/bin/python benchmarks/metric_update.py
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from ignite.metrics import ConfusionMatrix
from sklearn.metrics import confusion_matrix

from ignite_app.metrics import ConfusionMatrixMetric

Batch = tuple[torch.Tensor, torch.Tensor]  # logits (B, C), targets (B,)

TARGETS = {10: 1.2, 1000: 0.5}  # ConfusionMatrixMetric at most this many times the bincount time


class Bincount:
    """The bare baseline: flat indices, one bincount of length C*C per batch, added to the counts."""

    name = "torch.bincount (bare)"

    def __init__(self, c: int) -> None:
        self.c = c
        self.reset()

    def reset(self) -> None:
        self.counts = torch.zeros(self.c * self.c, dtype=torch.int64)

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        index = y * self.c + logits.argmax(dim=1)
        self.counts += torch.bincount(index, minlength=self.c * self.c)

    def matrix(self) -> np.ndarray:
        return self.counts.view(self.c, self.c).numpy()


class IndexAdd(Bincount):
    """The bare O(B) accumulator the metric is built on, without its input checks."""

    name = "index_add_ (bare)"

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        index = y * self.c + logits.argmax(dim=1)
        self.counts.index_add_(0, index, torch.ones_like(index))


class Ours:
    name = "ConfusionMatrixMetric"

    def __init__(self, c: int) -> None:
        self.metric = ConfusionMatrixMetric([f"class {i}" for i in range(c)])

    def reset(self) -> None:
        self.metric.reset()

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.metric.update((logits, y))

    def matrix(self) -> np.ndarray:
        return self.metric.compute().counts


class IgniteConfusionMatrix(Ours):
    name = "ignite ConfusionMatrix"

    def __init__(self, c: int) -> None:
        self.metric = ConfusionMatrix(num_classes=c)

    def matrix(self) -> np.ndarray:
        return self.metric.compute().numpy()


class PandasTracker:
    """The tutorial's MetricTracker.update: argmax, then one DataFrame.loc increment per sample.

    The tutorial labels the frame by class index but indexes it by class name (a KeyError); here both are
    names, which is what it means to do.
    """

    name = "pandas MetricTracker (tutorial)"

    def __init__(self, c: int) -> None:
        self.label_map = {i: f"class {i}" for i in range(c)}
        self.reset()

    def reset(self) -> None:
        names = list(self.label_map.values())
        self.confusion_metric = pd.DataFrame(0, index=names, columns=names)

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        pred = torch.argmax(logits, dim=1).cpu().numpy()
        target = y.cpu().numpy()
        for i in range(len(target)):
            self.confusion_metric.loc[self.label_map[target[i]], self.label_map[pred[i]]] += 1

    def matrix(self) -> np.ndarray:
        return self.confusion_metric.to_numpy()


Implementation = Bincount | Ours | PandasTracker  # what time_per_batch needs: reset, update, matrix, name


def make_batches(c: int, n: int, batch_size: int, seed: int) -> list[Batch]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=generator)
    y = torch.randint(0, c, (n,), generator=generator)
    return list(zip(logits.split(batch_size), y.split(batch_size)))


def time_per_batch(impls: Sequence[Implementation], batches: Sequence[Batch], repeats: int) -> list[float]:
    """For each implementation, the median over `repeats` passes of its mean ms per batch.

    One untimed pass warms each up. Each repeat then times one whole pass of every implementation, in a
    fresh random order: a pass runs in a tight loop, as an evaluator would call it, while a slow spell of a
    shared machine falls on all implementations alike rather than on whichever ran at the time.
    """
    for impl in impls:
        for logits, y in batches:
            impl.update(logits, y)
    order = random.Random(0)  # seeded: the same schedule every run
    times: list[list[float]] = [[] for _ in impls]
    for _ in range(repeats):
        for i in order.sample(range(len(impls)), len(impls)):
            impls[i].reset()
            start = time.perf_counter()
            for logits, y in batches:
                impls[i].update(logits, y)
            times[i].append((time.perf_counter() - start) / len(batches) * 1e3)
    return [statistics.median(t) for t in times]


def check_against_sklearn(impl: Implementation, batches: Sequence[Batch], c: int) -> None:
    """After a timed pass, the implementation holds exactly one pass over `batches`."""
    y = torch.cat([y for _, y in batches]).numpy()
    pred = torch.cat([logits.argmax(dim=1) for logits, _ in batches]).numpy()
    expected = confusion_matrix(y, pred, labels=range(c))
    if not np.array_equal(impl.matrix(), expected):
        raise SystemExit(f"{impl.name} at C={c}: the matrix differs from scikit-learn's confusion_matrix")


def run(c: int, args: argparse.Namespace) -> float:
    """Print the table rows for `c` classes; return ConfusionMatrixMetric's time as a multiple of bincount's."""
    batches = make_batches(c, args.samples, args.batch_size, seed=c)
    fast = [Bincount(c), IndexAdd(c), Ours(c), IgniteConfusionMatrix(c)]
    results = list(zip(fast, time_per_batch(fast, batches, args.repeats), [batches] * len(fast)))
    # The tutorial's tracker takes tens of ms a batch: fewer passes, and fewer batches where C is large.
    pandas_batches = batches[: args.pandas_batches_c1000] if c == 1000 else batches
    tracker = PandasTracker(c)
    results.append((tracker, time_per_batch([tracker], pandas_batches, args.pandas_repeats)[0], pandas_batches))
    base = results[0][1]
    for impl, ms, timed in results:
        check_against_sklearn(impl, timed, c)
        note = f" (on {len(timed)} of {len(batches)} batches)" if len(timed) < len(batches) else ""
        print(f"| {c} | {impl.name}{note} | {ms:.4f} | {ms / base:.2f} |", flush=True)
    return results[2][1] / base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--pandas-repeats", type=int, default=3)
    parser.add_argument("--pandas-batches-c1000", type=int, default=8,
                        help="the pandas tracker is timed on only this many batches at C=1000 (it is that slow)")
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000], help="values of C to time")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average "
          f"{load}; {args.samples} samples, batch size {args.batch_size}; median of {args.repeats} interleaved "
          f"passes ({args.pandas_repeats} for pandas) after one warm-up pass\n")
    print("| C | implementation | ms/batch | × bincount |")
    print("|---:|---|---:|---:|")
    ratios = {c: run(c, args) for c in args.classes}
    print("\nall matrices equal scikit-learn's confusion_matrix")
    targets = {c: limit for c, limit in TARGETS.items() if c in ratios}
    met = all(ratios[c] <= limit for c, limit in targets.items())
    summary = ", ".join(f"C={c}: {ratios[c]:.2f}x (target <= {limit}x)" for c, limit in targets.items())
    print(f"targets {'met' if met else 'NOT met'}: {summary}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
