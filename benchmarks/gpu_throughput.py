"""Single-GPU training throughput of the app's trainer on synthetic 3x32x32 images, with and without --amp.

    python benchmarks/gpu_throughput.py [--epochs 2] [--batch-size 256]

Each setting trains through the app (all handlers on, progress bar off) for a few epochs; the first epoch warms
up cuDNN and the allocator and is not counted. Without a CUDA device the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from ignite.engine import Events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ignite_app.app import build  # noqa: E402
from ignite_app.config import TrainConfig  # noqa: E402

SETTINGS = {"fp32": {}, "amp": {"amp": True}, "amp + channels-last": {"amp": True, "channels_last": True}}


def samples_per_second(config: TrainConfig) -> float:
    """Training samples per second over epochs 2.. (validation and checkpoints are outside the timed spans)."""
    app = build(config)
    starts: list[float] = []
    ends: list[float] = []

    def stamp(into: list[float]) -> None:
        torch.cuda.synchronize()
        into.append(time.perf_counter())

    app.trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: stamp(starts))
    last_iteration = Events.ITERATION_COMPLETED(event_filter=lambda e, i: i % e.state.epoch_length == 0)
    app.trainer.add_event_handler(last_iteration, lambda _: stamp(ends))
    app.run()
    spans = [end - start for start, end in zip(starts[1:], ends[1:])]
    return len(spans) * len(app.train_loader) * config.batch_size / sum(spans)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in SETTINGS.items():
            config = TrainConfig(dataset="synthetic", epochs=args.epochs, batch_size=args.batch_size,
                                 num_workers=2, output_dir=Path(tmp), run_name=f"setting{len(rows)}",
                                 progress=False, **extra)
            rows.append((name, samples_per_second(config)))
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, batch {args.batch_size}\n")
    print("| setting | samples/s | vs fp32 |\n|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / rows[0][1]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
