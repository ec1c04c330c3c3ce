"""What the app's engines and handlers cost, against a hand-written PyTorch loop doing the same training.

Both sides train the same model from the same seed on the same batches (the app's loaders), validate after every
epoch and keep the best weights on disk; the app also runs its progress bar, TensorBoard logging, metrics and
summary lines. Runs alternate A/B and the median epoch time of each side is compared; at the end both must hold
bit-identical weights, which shows the two really did the same work.

    python benchmarks/engine_overhead.py [--repeats 3] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from ignite.utils import manual_seed
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ignite_app.app import build  # noqa: E402
from ignite_app.config import TrainConfig  # noqa: E402
from ignite_app.data import build_data, build_loaders  # noqa: E402
from ignite_app.models import build_classifier, build_optimizer, param_groups  # noqa: E402
from ignite_app.runstate.fileio import atomic_write  # noqa: E402


def app_run(config: TrainConfig) -> tuple[float, dict[str, torch.Tensor]]:
    app = build(config)
    start = time.perf_counter()
    app.trainer.run(app.train_loader, max_epochs=config.epochs)
    app.handlers.training_checkpoint.save_handler.wait()  # the checkpoints written on the writer thread count too
    seconds = time.perf_counter() - start
    app.close()
    return seconds, app.model.state_dict()


def hand_run(config: TrainConfig, out_dir: Path) -> tuple[float, dict[str, torch.Tensor]]:
    """The tutorial's loop with its bugs fixed: what a careful user writes without a framework."""
    data = build_data(config)
    train_loader, val_loader = build_loaders(data, config)
    manual_seed(config.seed)
    model = build_classifier(config.model, len(data.classes), data.input_shape, data.mean, data.std)
    optimizer = build_optimizer(config.optimizer, param_groups(model, config), config)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.plateau_factor,
                                                           patience=config.plateau_patience)
    criterion = nn.CrossEntropyLoss()
    best_acc = -1.0
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        train_loader.batch_sampler.set_epoch(epoch)
        model.train()
        loss_sum, seen = 0.0, 0
        for x, y in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            seen += len(y)
        scheduler.step(loss_sum / seen)
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += int((model(x).argmax(1) == y).sum())
                total += len(y)
        acc = correct / total
        print(f"hand loop epoch {epoch}: loss {loss_sum / seen:.4f} acc {acc:.4f}", file=sys.stderr)
        if acc > best_acc:
            best_acc = acc
            atomic_write(out_dir / "best.pt", lambda f: torch.save({"state_dict": model.state_dict()}, f))
    return time.perf_counter() - start, model.state_dict()


def compare(dataset: str, epochs: int, repeats: int, tmp: Path) -> dict[str, float]:
    config = TrainConfig(dataset=dataset, epochs=epochs, output_dir=tmp / dataset, progress=True)
    samples = epochs * len(build_loaders(build_data(config), config)[0]) * config.batch_size
    app_times, hand_times = [], []
    for r in range(repeats + 1):  # the first round warms up allocators and caches and is not counted
        a_seconds, a_weights = app_run(config)
        h_seconds, h_weights = hand_run(config, tmp)
        if r:
            app_times.append(a_seconds)
            hand_times.append(h_seconds)
    same = all(torch.equal(a_weights[k], h_weights[k]) for k in h_weights)
    app_s, hand_s = statistics.median(app_times), statistics.median(hand_times)
    return {"app": samples / app_s, "hand": samples / hand_s, "ratio": hand_s / app_s, "same_weights": same}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed run on digits (synthetic: 1)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, epochs in (("digits", args.epochs), ("synthetic", 1)):
            rows.append((dataset, compare(dataset, epochs, args.repeats, Path(tmp))))
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} runs\n")
    print("| dataset | app samples/s | hand loop samples/s | ratio (app / hand) | identical weights |")
    print("|---|---:|---:|---:|---|")
    for dataset, r in rows:
        print(f"| {dataset} | {r['app']:,.0f} | {r['hand']:,.0f} | {r['ratio']:.3f} | {r['same_weights']} |")
    ok = all(r["ratio"] >= 0.97 and r["same_weights"] for _, r in rows)
    print(f"\ntarget (ratio >= 0.97 and identical weights): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
