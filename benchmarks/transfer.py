"""Transfer learning without a download: pretrain on half of the digits' classes, fine-tune on the other half from
10 images per class with ``--weights``, against the same network trained from scratch on the same images.

    python benchmarks/transfer.py [--seeds 5] [--model timm:resnet18] [--shots 10] [--image-size 32] [--threads 1]

1. **Source**: the network trained from scratch on every training image of the digits 0-4 (about 720), resized on
   the device to ``--image-size``; its ``best_model.pt`` is the "pretrained" file.
2. **Target**, for each seed: ``--shots`` training images of each digit 5-9 drawn with the seed; validation on every
   validation image of 5-9 (179). Three runs on exactly these images, the same epochs, optimizer and seed:
   *scratch* (random weights), *fine-tuned* (``--weights`` of the source: the backbone is loaded, the head is left
   fresh since the classes differ) and *fine-tuned, head first* (the same with ``--freeze-epochs`` and
   ``--backbone-lr-scale``). The table shows each run's best validation accuracy.

The target is met when fine-tuning beats scratch on every seed and by at least 10 points on average. One torch
thread by default: on a shared machine two threads wait on each other whenever another process holds a core (epochs
of 0.6 s then took up to 30 s), while accuracy is what this measures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ignite_app import TrainConfig, build  # noqa: E402
from ignite_app.data.builtin import load_digits_data, tensor_bundle  # noqa: E402
from ignite_app.data.spec import DataBundle  # noqa: E402

SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
ARMS = ("scratch", "fine-tuned", "fine-tuned, head first")


def subset(digits: DataBundle, classes: tuple[int, ...], shots: int | None, seed: int) -> DataBundle:
    """The digits of ``classes`` relabelled 0..k-1: ``shots`` training images per class (drawn with ``seed``, all
    of them when None), every validation image of those classes."""
    x, y = digits.train.images, digits.train.labels
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in classes:
        idx = torch.nonzero(y == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=g)[:shots]] if shots else idx)
    train = torch.cat(picks).sort().values
    xv, yv = digits.val.images, digits.val.labels
    val = torch.nonzero(torch.isin(yv, torch.tensor(classes))).flatten()
    relabel = torch.full((10,), -1, dtype=torch.long)
    relabel[list(classes)] = torch.arange(len(classes))
    return tensor_bundle(x[train], relabel[y[train]], xv[val], relabel[yv[val]], [str(c) for c in classes])


def best_accuracy(data: DataBundle, out: Path, name: str, **options) -> tuple[float, float]:
    start = time.perf_counter()
    config = TrainConfig(output_dir=out, run_name=name, progress=False, normalization="dataset", **options)
    result = build(config, data=data).run()
    return result.best_accuracy, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--model", default="timm:resnet18")
    parser.add_argument("--shots", type=int, default=10, help="training images per target class (default 10)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--source-epochs", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=30, help="epochs of each target run (default 30)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    common = {"model": args.model, "image_size": args.image_size, "lr_scheduler": "cosine", "warmup_epochs": 1.0}
    digits = load_digits_data()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        source_data = subset(digits, SOURCE, None, 0)
        acc, seconds = best_accuracy(source_data, out, "source", epochs=args.source_epochs, **common)
        print(f"source: {args.model} from scratch on digits {SOURCE} ({len(source_data.train)} images, "
              f"{args.image_size}x{args.image_size}): best val accuracy {100 * acc:.2f}% in {seconds:.0f} s",
              flush=True)
        weights = out / "source" / "checkpoints" / "best_model.pt"
        arms = {"scratch": {}, "fine-tuned": {"weights": weights},
                "fine-tuned, head first": {"weights": weights, "freeze_epochs": 5, "backbone_lr_scale": 0.3}}
        for seed in range(args.seeds):
            target = subset(digits, TARGET, args.shots, seed)
            row = [seed]
            for arm, options in arms.items():
                acc, seconds = best_accuracy(target, out, f"{arm}-{seed}".replace(" ", "").replace(",", ""),
                                             epochs=args.epochs, seed=seed, batch_size=args.shots, **common, **options)
                row.append((acc, seconds))
            rows.append(row)
    print(f"\ntarget: digits {TARGET}, {args.shots} training images per class ({len(TARGET) * args.shots}), "
          f"{len(target.val)} validation images; {args.epochs} epochs, AdamW, cosine; best val accuracy")
    print("| seed | " + " | ".join(ARMS) + " |")
    print("|---:|" + "---:|" * len(ARMS))
    for seed, *results in rows:
        print(f"| {seed} | " + " | ".join(f"{100 * acc:.2f}%" for acc, _ in results) + " |")
    means = [statistics.mean(row[1 + i][0] for row in rows) for i in range(len(ARMS))]
    print("| mean | " + " | ".join(f"{100 * m:.2f}%" for m in means) + " |")
    print("\nmean wall time per target run: " + ", ".join(
        f"{arm} {statistics.mean(row[1 + i][1] for row in rows):.1f} s" for i, arm in enumerate(ARMS)))
    gains = [row[2][0] - row[1][0] for row in rows]
    ok = min(gains) > 0 and statistics.mean(gains) >= 0.10
    print(f"fine-tuned - scratch: mean {100 * statistics.mean(gains):+.2f} points, smallest {100 * min(gains):+.2f}; "
          f"target (better on every seed, +10 points on average): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
