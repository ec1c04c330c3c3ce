"""Is loading the bottleneck? Images/s of the folder training loader beside the training throughput of the model.

Generates a folder dataset of RGB PNGs in a temporary folder (10 classes: a coloured square on noise), then
measures, in one process and side by side:

- start-up: building the data (listing the files, their fingerprint, the mean and std of a seeded sample);
- loader, W workers: images/s of the training loader alone (decode, resize, random crop and flip, normalise,
  collate), one epoch after a warm-up epoch (the workers are persistent: they start once per run);
- training step: samples/s of the default model's train steps (forward, backward, AdamW) on batches already in
  memory, i.e. what the model could consume if loading were free;
- training fed by the loader, W workers: samples/s of the real thing, where the workers share the CPU with the
  training step.

    python benchmarks/folder_loader.py [--images 2000] [--size 32] [--batch-size 64] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ignite.utils import manual_seed
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ignite_app.config import TrainConfig  # noqa: E402
from ignite_app.data import build_data, build_loaders  # noqa: E402
from ignite_app.engines import StepOptions, create_trainer  # noqa: E402
from ignite_app.models import build_classifier, build_optimizer, param_groups  # noqa: E402

CLASSES = 10


def write_images(root: Path, count: int, size: int) -> None:
    """``root/train/class_k`` and ``root/val/class_k`` PNGs: noise with a square of the class's colour."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (CLASSES, 3))
    for i in range(count):
        label = i % CLASSES
        split = "val" if (i // CLASSES) % 5 == 0 else "train"  # every 5th image of each class
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        top, left = rng.integers(0, size // 2, 2)
        pixels[top:top + size // 2, left:left + size // 2] = colours[label]
        folder = root / split / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")


def loader_rate(config: TrainConfig) -> tuple[float, float]:
    """(seconds of the start-up, images/s of one training-loader epoch after a warm-up epoch)."""
    start = time.perf_counter()
    data = build_data(config)
    check = time.perf_counter() - start
    train, _ = build_loaders(data, config)
    for epoch in (1, 2):  # epoch 1 starts the persistent workers; epoch 2 is measured
        train.batch_sampler.set_epoch(epoch)
        start = time.perf_counter()
        images = sum(len(y) for _, y in train)
    return check, images / (time.perf_counter() - start)


def training_rate(config: TrainConfig, fed_by_loader: bool) -> float:
    """Samples/s of train steps of the default model: on batches in memory, or fed by the loader itself."""
    data = build_data(config)
    train, _ = build_loaders(data, config)
    manual_seed(config.seed)
    model = build_classifier(config.model, len(data.classes), data.input_shape, data.mean, data.std)
    optimizer = build_optimizer(config.optimizer, param_groups(model, config), config)
    trainer = create_trainer(model, optimizer, nn.CrossEntropyLoss(), StepOptions(torch.device("cpu")))
    train.batch_sampler.set_epoch(1)
    batches = list(train)
    trainer.run(batches[:3], max_epochs=1)  # warm-up: first-call allocations
    source = train if fed_by_loader else batches
    if fed_by_loader:
        train.batch_sampler.set_epoch(2)
    start = time.perf_counter()
    trainer.run(source, max_epochs=1)
    return sum(len(y) for _, y in batches) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32, help="side of the generated images and --image-size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_images(Path(tmp), args.images, args.size)

        def config(workers: int) -> TrainConfig:
            return TrainConfig(dataset="folder", data_dir=tmp, image_size=args.size, batch_size=args.batch_size,
                               num_workers=workers)

        rows = []
        for workers in args.workers:
            check, rate = loader_rate(config(workers))
            rows.append((f"loader, {workers} workers (augmented)", rate, f"start-up {check:.1f} s"))
        step = training_rate(config(0), fed_by_loader=False)
        rows.append(("training step, batches in memory", step, "model cnn, AdamW"))
        for workers in args.workers:
            fed = training_rate(config(workers), fed_by_loader=True)
            rows.append((f"training fed by the loader, {workers} workers", fed, "the real thing"))
    print(f"{args.images} {args.size}x{args.size} RGB PNGs, batch {args.batch_size}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n")
    print("| what | samples/s | note |\n|---|---:|---|")
    for name, rate, note in rows:
        print(f"| {name} | {rate:,.0f} | {note} |")
    best_loader = max(rate for _, rate, _ in rows[:len(args.workers)])
    fed_rate, fed_workers = max((rate, w) for (_, rate, _), w in zip(rows[len(args.workers) + 1:], args.workers))
    verdict = "is" if best_loader < step else "is not"
    print(f"\nloading {verdict} the bottleneck: the fastest loader gives {best_loader:,.0f} images/s, the model "
          f"trains on {step:,.0f} samples/s; fed by the loader it trains fastest with --num-workers {fed_workers} "
          f"({fed_rate:,.0f} samples/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
