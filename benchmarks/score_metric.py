"""What the score metric costs, how far its histogram mode is from scikit-learn, and what an exported model costs.

1. Update cost per batch (batch 256) at C = 10 and 1000, as a multiple of the app's confusion-matrix update
   (``ConfusionMatrixMetric``), beside a bare ``index_add_`` of ``y * C + argmax`` and the confusion matrix
   carrying the score metric (what the evaluator runs). Each pass feeds every batch to one implementation; passes
   of all implementations alternate in a fresh random order for every repeat; the table gives the median ms per
   batch.
2. ``compute()`` of one validation in each mode, and the reliability diagram: drawn by matplotlib
   (``reliability_png``) and painted into its frame (``reliability_image``, what TensorBoard gets).
3. Histogram mode against scikit-learn on stated score distributions (softmax of ``s * onehot(y) + t * noise``,
   noise N(0, 1)): the largest per-class and macro differences in AP and ROC-AUC, for several bin counts.
4. The exported model's CPU latency at batch 1 and 64 (uint8 images in, logits out): onnxruntime, the
   ``torch.export`` program (``.pt2``) and eager PyTorch, side by side, for the CNN (3x32x32) and torchvision's
   ResNet-18 (3x112x112), exported with ``ignite_app.export.export_model`` (verified on the timed images).

    .venv/bin/python benchmarks/score_metric.py [--samples 10240] [--repeats 15] [--threads 1] [--skip-export]
    .venv/bin/python benchmarks/score_metric.py --export-only      # the latency table, each runtime's own threads
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import average_precision_score, roc_auc_score

from ignite_app.metrics import ConfusionMatrixMetric
from ignite_app.metrics.scores import EXACT, HISTOGRAM, ScoreMetric, reliability_png
from ignite_app.reporting.reliability import reliability_image

Batch = tuple[torch.Tensor, torch.Tensor]  # probabilities (B, C), targets (B,)


class ConfusionCounts:
    """The bare O(B) accumulation the app's confusion-matrix metric is built on."""

    name = "bare index_add_ of y * C + argmax"

    def __init__(self, c: int) -> None:
        self.c = c
        self.reset()

    def reset(self) -> None:
        self.counts = torch.zeros(self.c * self.c, dtype=torch.int64)

    def update(self, batch: Batch) -> None:
        probs, y = batch
        index = y * self.c + probs.argmax(dim=1)
        self.counts.index_add_(0, index, torch.ones_like(index))


class Scores:
    def __init__(self, c: int, mode: str) -> None:
        self.name = f"ScoreMetric, {mode} mode"
        self.metric = ScoreMetric(c, memory_budget_bytes=0 if mode == HISTOGRAM else 2**40)

    def reset(self) -> None:
        self.metric.reset()

    def update(self, batch: Batch) -> None:
        self.metric.update(batch)


class Confusion(Scores):
    """The app's ConfusionMatrixMetric, alone (the baseline) or carrying the score metric (what the evaluator runs)."""

    def __init__(self, c: int, with_scores: bool) -> None:
        names = [str(i) for i in range(c)]
        self.name = "ConfusionMatrixMetric with ScoreMetric (exact)" if with_scores else "ConfusionMatrixMetric"
        self.metric = ConfusionMatrixMetric(names, scores=ScoreMetric(c, names, memory_budget_bytes=2**40)
                                            if with_scores else None)


def softmax_batches(n: int, c: int, signal: float, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=generator)
    logits = noise * torch.randn(n, c, generator=generator)
    logits[torch.arange(n), y] += signal
    return logits.softmax(dim=1), y


def time_per_batch(impls: Sequence[ConfusionCounts | Scores], batches: Sequence[Batch], repeats: int) -> list[float]:
    """Median over `repeats` interleaved passes of each implementation's mean ms per batch (after a warm-up)."""
    for impl in impls:
        for batch in batches:
            impl.update(batch)
    order = random.Random(0)
    times: list[list[float]] = [[] for _ in impls]
    for _ in range(repeats):
        for i in order.sample(range(len(impls)), len(impls)):
            impls[i].reset()
            start = time.perf_counter()
            for batch in batches:
                impls[i].update(batch)
            times[i].append((time.perf_counter() - start) / len(batches) * 1e3)
    return [statistics.median(t) for t in times]


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def update_table(args: argparse.Namespace) -> None:
    print("| C | implementation | ms/batch | × confusion matrix |")
    print("|---:|---|---:|---:|")
    for c in (10, 1000):
        probs, y = softmax_batches(args.samples, c, 3.0, 1.0, seed=c)
        batches = list(zip(probs.split(args.batch_size), y.split(args.batch_size)))
        impls = [Confusion(c, False), ConfusionCounts(c), Scores(c, EXACT), Scores(c, HISTOGRAM), Confusion(c, True)]
        times = time_per_batch(impls, batches, args.repeats)
        for impl, ms in zip(impls, times):
            print(f"| {c} | {impl.name} | {ms:.4f} | {ms / times[0]:.2f} |", flush=True)


def compute_table(args: argparse.Namespace) -> None:
    print(f"\n| C | mode | compute() of {args.samples} samples, ms |")
    print("|---:|---|---:|")
    for c in (10, 1000):
        probs, y = softmax_batches(args.samples, c, 3.0, 1.0, seed=c)
        for mode in (EXACT, HISTOGRAM):
            metric = Scores(c, mode).metric
            for batch in zip(probs.split(args.batch_size), y.split(args.batch_size)):
                metric.update(batch)
            print(f"| {c} | {mode} | {median_ms(metric.compute, 3):.1f} |", flush=True)
    report = metric.compute()
    pr_curve_cost(report)
    reliability_image(report, "warm-up")  # the frame is drawn once per run
    print(f"\nreliability diagram (320 x 320): reliability_png (matplotlib) "
          f"{median_ms(lambda: reliability_png(report), 5):.1f} ms, reliability_image (painted) "
          f"{median_ms(lambda: reliability_image(report, 'epoch 1'), 15):.1f} ms")


def pr_curve_cost(report: object) -> None:
    """Writing the PR curves of every class of a 1000-class report to an event file: time and bytes."""
    from torch.utils.tensorboard import SummaryWriter

    from ignite_app.reporting.tensorboard import class_tags, write_score_summaries

    with tempfile.TemporaryDirectory() as folder:
        writer = SummaryWriter(folder, max_queue=1000)
        tags = class_tags(report.class_names)
        start = time.perf_counter()
        write_score_summaries(writer, report, tags, 1, time.time(), len(tags))
        writer.flush()
        seconds = time.perf_counter() - start
        writer.close()
        size = sum(f.stat().st_size for f in Path(folder).iterdir())
    print(f"\n{len(tags)} PR curves and the reliability diagram into an event file: {seconds:.2f} s, "
          f"{size / 1e6:.1f} MB")


DISTRIBUTIONS = {  # name: (signal s, noise t, rounding): probabilities softmax(s * onehot(y) + t * N(0, 1))
    "separated (s=8, t=1)": (8.0, 1.0, None),
    "overlapping (s=1, t=1)": (1.0, 1.0, None),
    "confident with confident mistakes (s=10, t=3)": (10.0, 3.0, None),
    "ties: s=2, t=1 rounded to 0.01": (2.0, 1.0, 0.01),
}


def error_table(args: argparse.Namespace) -> None:
    print(f"\nhistogram mode minus scikit-learn, {args.error_samples} samples; largest |difference| over classes "
          "(per class) and of the macro mean")
    print("\n| distribution | C | bins | AP per class | ROC-AUC per class | mAP | ROC-AUC macro |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (signal, noise, rounding) in DISTRIBUTIONS.items():
        for c in (10, 100):
            probs, y = softmax_batches(args.error_samples, c, signal, noise, seed=7)
            if rounding:
                probs = torch.round(probs / rounding) * rounding
            onehot = np.eye(c)[y.numpy()]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                ap = average_precision_score(onehot, probs.numpy(), average=None)
                auc = roc_auc_score(onehot, probs.numpy(), average=None)
            for bins in args.bins:
                metric = ScoreMetric(c, memory_budget_bytes=0, bins=bins)
                for batch in zip(probs.split(args.batch_size), y.split(args.batch_size)):
                    metric.update(batch)
                report = metric.compute()
                print(f"| {name} | {c} | {bins} | {np.abs(report.ap - ap).max():.1e} | "
                      f"{np.nanmax(np.abs(report.roc_auc - auc)):.1e} | {abs(report.ap_macro - ap.mean()):.1e} | "
                      f"{abs(report.roc_auc_macro - np.nanmean(auc)):.1e} |", flush=True)


def export_table(args: argparse.Namespace) -> None:
    """CPU latency of the exported files against eager PyTorch, interleaved, median ms per batch."""
    from torchvision.models import resnet18

    from ignite_app.artifacts import load_artifact
    from ignite_app.config import TrainConfig
    from ignite_app.evaluation import SavedModel
    from ignite_app.export import export_model
    from ignite_app.models import build_classifier

    print(f"\nexported model, CPU latency (uint8 images in, logits out), {torch.get_num_threads()} thread(s) for every "
          f"runtime, median of {args.export_repeats} interleaved runs\n")
    print("| model | input | batch | runtime | ms/batch | × eager |")
    print("|---|---|---:|---|---:|---:|")
    torch.manual_seed(0)
    models = {"cnn": ((3, 32, 32), build_classifier("cnn", 10, (3, 32, 32), [0.5] * 3, [0.25] * 3)),
              "resnet18 (torchvision)": ((3, 112, 112), build_classifier("cnn", 10, (3, 112, 112), [0.5] * 3,
                                                                         [0.25] * 3, network=resnet18(num_classes=10)))}
    with tempfile.TemporaryDirectory() as folder:
        for name, (shape, model) in models.items():
            model.eval()
            saved = SavedModel(Path(f"{name}.pt"), model, TrainConfig(), tuple(map(str, range(10))), shape,
                               (0.5,) * 3, (0.25,) * 3)
            images = torch.randint(0, 256, (64, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
            runtimes: dict[str, Callable[[torch.Tensor], object]] = {}
            for fmt, label in (("onnx", "onnxruntime"), ("pt2", "torch.export (.pt2)")):
                path = export_model(saved, fmt, Path(folder) / f"model.{fmt}", images).path
                artifact = load_artifact(path, threads=torch.get_num_threads())  # as many threads as torch
                runtimes[label] = lambda x, run=artifact.run: run(x.numpy())

            def eager(x: torch.Tensor) -> object:
                with torch.no_grad():
                    return model(x)

            runtimes["eager PyTorch"] = eager
            for batch in (1, 64):
                x = images[:batch]
                times: dict[str, list[float]] = {label: [] for label in runtimes}
                for label, run in runtimes.items():  # warm-up
                    run(x)
                order = random.Random(batch)
                for _ in range(args.export_repeats):
                    for label in order.sample(list(runtimes), len(runtimes)):
                        start = time.perf_counter()
                        runtimes[label](x)
                        times[label].append((time.perf_counter() - start) * 1e3)
                medians = {label: statistics.median(t) for label, t in times.items()}
                for label, ms in medians.items():
                    print(f"| {name} | {'x'.join(map(str, shape))} | {batch} | {label} | {ms:.2f} | "
                          f"{ms / medians['eager PyTorch']:.2f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_240, help="samples per pass (update and compute tables)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--error-samples", type=int, default=20_000)
    parser.add_argument("--bins", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--export-repeats", type=int, default=15)
    parser.add_argument("--skip-export", action="store_true", help="leave out the exported-model latency table")
    parser.add_argument("--export-only", action="store_true", help="only the exported-model latency table")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load}; "
          f"batch size {args.batch_size}, {args.samples} samples per pass, median of {args.repeats} interleaved "
          "passes after one warm-up pass\n")
    if not args.export_only:
        update_table(args)
        compute_table(args)
        error_table(args)
    if not args.skip_export:
        export_table(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
