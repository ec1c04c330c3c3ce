"""Imbalanced digits: macro-F1 and worst-class recall without a remedy, with --class-weights balanced and with
--sampler balanced, side by side over several seeds.

    python benchmarks/imbalance.py [--seeds 3] [extra train.py options...]

The training split of scikit-learn's digits keeps a tenth of the images of classes 1, 4 and 7 (their first ones,
a fixed list); the validation split stays whole and balanced, so recall on the rare classes is measured on as many
images as on the others. Every run trains the default configuration and is scored on its last epoch (no choice of
the best epoch by validation accuracy, which would favour whichever remedy looks lucky on the validation set).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ignite_app.app import build  # noqa: E402
from ignite_app.cli.train import parse_config  # noqa: E402
from ignite_app.data.builtin import TensorImageDataset, load_digits_data  # noqa: E402
from ignite_app.data.spec import DataBundle  # noqa: E402

RARE = (1, 4, 7)  # the classes cut to a tenth of their training images
REMEDIES = {"none": [], "--class-weights balanced": ["--class-weights", "balanced"],
            "--sampler balanced": ["--sampler", "balanced"]}


def imbalanced_digits() -> DataBundle:
    """digits with the training images of RARE cut to their first tenth; validation untouched."""
    data = load_digits_data()
    images, labels = data.train.images, data.train.labels
    keep = torch.ones(len(labels), dtype=torch.bool)
    for c in RARE:
        members = torch.nonzero(labels == c).flatten()
        keep[members[-(-len(members) // 10):]] = False
    train = TensorImageDataset(images[keep], labels[keep])
    return replace(data, train=train, fingerprint=None)


def score(report) -> dict[str, float]:
    recall = report.per_class["recall"]
    return {"f1": report.macro["f1"], "worst": float(recall.min()),
            "rare": float(recall.iloc[list(RARE)].mean()), "accuracy": report.accuracy}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    args, train_args = parser.parse_known_args()
    data = imbalanced_digits()
    counts = torch.bincount(data.train.labels, minlength=10).tolist()
    print(f"training images per class: {counts} (classes {', '.join(map(str, RARE))} cut to a tenth); validation: "
          f"{len(data.val)} images, balanced\n")
    logging.getLogger("ignite_app").setLevel(logging.WARNING)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in REMEDIES}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name, options in REMEDIES.items():  # interleaved: a slow moment of the machine hits every remedy
                config = parse_config([*train_args, *options, "--seed", str(seed), "--output-dir", tmp,
                                       "--run-name", f"{name.strip('-').replace(' ', '-')}-{seed}", "--no-progress"])
                app = build(config, data=data)
                app.run()
                results[name].append(score(app.trainer.state.val_report))
    base = {key: statistics.mean(r[key] for r in results["none"]) for key in ("f1", "worst", "rare")}
    print("| remedy | macro-F1 | worst-class recall | recall of the rare classes | accuracy | macro-F1 / none | "
          "worst recall / none |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        def cell(key: str) -> str:
            values = [r[key] for r in rows]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            return f"{statistics.mean(values):.3f}{spread}"

        f1, worst = (statistics.mean(r[k] for r in rows) for k in ("f1", "worst"))
        print(f"| {name} | {cell('f1')} | {cell('worst')} | {cell('rare')} | {cell('accuracy')} | "
              f"{f1 / base['f1']:.3f} | {worst / base['worst']:.3f} |")
    print(f"\nmean ± standard deviation over seeds 0-{args.seeds - 1}, last epoch of each run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
