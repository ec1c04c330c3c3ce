"""What the validation reports cost: the drawing alone, and the epoch time with the reports off, inline and in the
background thread, side by side.

1. The report job alone (per-class scalars, report text, both heatmaps, into a throw-away event file) on synthetic
   counts for C = 10 and 100 classes: ms per validation, warm (the cached figure) and cold (the first validation).
2. Training runs, alternating the three modes round by round: ``off`` (report handlers removed), ``inline`` (the job
   runs in the training thread) and ``background`` (the app's default: one worker thread). For each: the median
   epoch time (validation and epoch-end handlers included, first epoch left out: it builds the figures), and the
   ms per validation that the training thread spends in the report handlers. Cases: the default digits run
   (10 classes) and a synthetic 100-class run (3x32x32 images, 2,000 validation images).

    .venv/bin/python benchmarks/report_cost.py [--rounds 3] [--epochs 4] [--threads N]
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ignite_app.app as app_module  # noqa: E402
from ignite_app.config import TrainConfig  # noqa: E402
from ignite_app.data.builtin import load_synthetic_data  # noqa: E402
from ignite_app.metrics import ClassificationReport  # noqa: E402
from ignite_app.reporting.tensorboard import BackgroundJobs, write_report_summaries  # noqa: E402
from ignite_app.reporting.tbchecksum import use_fast_checksums  # noqa: E402

MODES = ("off", "inline", "background")


def synthetic_report(c: int, seed: int) -> ClassificationReport:
    """A plausible matrix: most samples on the diagonal, the same total for every seed (one validation set)."""
    rng = np.random.default_rng(seed)
    counts = np.full((c, c), 1, dtype=np.int64) + np.diag(rng.integers(20, 40, c))
    counts[np.arange(c), rng.integers(0, c, c)] += 60 - counts.sum(axis=1) + c  # every row sums to 60 + c
    return ClassificationReport.from_counts(counts, [f"class_{i}" for i in range(c)])


def job_ms(c: int, repeats: int, folder: Path) -> dict[str, float]:
    """Wall and CPU ms of one validation's report job, cold (first) and warm (median of ``repeats``)."""
    use_fast_checksums()  # as the app's TensorBoard writer does
    writer = SummaryWriter(str(folder / f"job{c}"), max_queue=1000)
    wall, cpu = [], []
    for epoch in range(repeats + 1):
        report = synthetic_report(c, seed=epoch)
        start, start_cpu = time.perf_counter(), time.thread_time()
        write_report_summaries(writer, report, epoch, time.time())
        wall.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.thread_time() - start_cpu))
    writer.close()
    return {"cold": wall[0], "wall": statistics.median(wall[1:]), "cpu": statistics.median(cpu[1:])}


def timed(handler: Callable[..., None], spent: dict[int, float], epoch: Callable[[], int]) -> Callable[..., None]:
    """``handler`` that adds its wall time to ``spent[epoch()]``: what the training thread waits for."""

    @functools.wraps(handler)
    def wrapper(*args: Any) -> None:
        start = time.perf_counter()
        handler(*args)
        spent[epoch()] = spent.get(epoch(), 0.0) + time.perf_counter() - start

    return wrapper


def train(config: TrainConfig, mode: str) -> tuple[float, float]:
    """Median epoch seconds and ms per validation in the report handlers (training thread), epochs 2..N."""
    jobs_class = functools.partial(BackgroundJobs, synchronous=(mode == "inline"))
    original = app_module.BackgroundJobs
    app_module.BackgroundJobs = jobs_class  # type: ignore[misc]
    try:
        app = app_module.build(config)
    finally:
        app_module.BackgroundJobs = original  # type: ignore[misc]
    handlers, spent = app.handlers, {}
    for handler in (handlers.report_logging, handlers.report_files):
        app.evaluator.remove_event_handler(handler, Events.COMPLETED)
        if mode != "off":
            app.evaluator.add_event_handler(Events.COMPLETED, timed(handler, spent, lambda: app.trainer.state.epoch),
                                            *((app.trainer,) if handler is handlers.report_logging else ()))
    starts: list[float] = []
    app.trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: starts.append(time.perf_counter()))
    app.trainer.run(app.train_loader, max_epochs=config.epochs)
    app.close()  # waits for the last drawing: it belongs to the run
    starts.append(time.perf_counter())
    per_validation = [1000 * seconds for epoch, seconds in spent.items() if epoch > 1]
    return statistics.median(np.diff(starts)[1:]), statistics.median(per_validation) if per_validation else 0.0


def compare(name: str, config: TrainConfig, rounds: int) -> dict[str, dict[str, float]]:
    epochs: dict[str, list[float]] = {m: [] for m in MODES}
    handler_ms: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(rounds):
        for mode in MODES:  # alternate, so that a slow phase of a shared machine hits every mode alike
            seconds, ms = train(config, mode)
            epochs[mode].append(seconds)
            handler_ms[mode].append(ms)
            print(f"{name} round {r + 1} {mode}: epoch {seconds * 1000:.0f} ms, report handlers {ms:.1f} ms",
                  file=sys.stderr)
    return {m: {"epoch": statistics.median(epochs[m]) * 1000, "handlers": statistics.median(handler_ms[m])}
            for m in MODES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is not timed)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("ignite_app").setLevel(logging.WARNING)
    synthetic100 = load_synthetic_data(num_classes=100)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jobs = {c: job_ms(c, repeats=5, folder=folder) for c in (10, 100)}
        cases = {"digits (10 classes)": (TrainConfig(epochs=args.epochs, output_dir=folder, progress=False), None),
                 "synthetic (100 classes)": (TrainConfig(dataset="synthetic", epochs=args.epochs, epoch_length=30,
                                                         output_dir=folder, progress=False), synthetic100)}
        results = {}
        for name, (config, data) in cases.items():
            original = app_module.build_data
            if data is not None:
                app_module.build_data = lambda config, data=data: data  # type: ignore[assignment]
            try:
                results[name] = compare(name, config, args.rounds)
            finally:
                app_module.build_data = original  # type: ignore[assignment]

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.rounds} rounds\n")
    print("| classes | report job, warm: wall ms | CPU ms | first validation (builds the figures): wall ms |")
    print("|---:|---:|---:|---:|")
    for c, ms in jobs.items():
        print(f"| {c} | {ms['wall']:.0f} | {ms['cpu']:.0f} | {ms['cold']:.0f} |")
    print("\n| run | epoch, reports off | epoch, inline | epoch, background | training thread per validation: "
          "inline | background |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        off = r["off"]["epoch"]
        cells = [f"{r[m]['epoch']:.0f} ms" + ("" if m == "off" else f" ({r[m]['epoch'] / off - 1:+.0%})")
                 for m in MODES]
        print(f"| {name} | {' | '.join(cells)} | {r['inline']['handlers']:.0f} ms | "
              f"{r['background']['handlers']:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
