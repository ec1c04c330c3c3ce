"""CPU speed of zoo networks as the app trains and evaluates them: images/s of a training step and of evaluation,
each network at its pretrained (native) input size, and what listing the zoos' names costs.

    python benchmarks/zoo_speed.py [--steps 3] [--rounds 3] [--threads 1 2]

The model is the app's: ``Classifier(Preprocess, network)`` fed uint8 images, the optimizer AdamW over the app's
parameter groups (``models.param_groups``). A training step is forward, cross-entropy, backward and optimizer
step in training mode; evaluation a forward in eval mode under ``torch.no_grad``. Random weights (speed does not
depend on them), batch 16, one warm-up step not timed. The machine may be shared: every configuration is measured
once per round, rounds interleaved, and the table shows the best round (the least disturbed) and the median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ignite_app.config import TrainConfig  # noqa: E402
from ignite_app.models import Preprocess, build_classifier, build_optimizer, network_static_info, param_groups  # noqa: E402,E501

NETWORKS = ("torchvision:resnet18", "timm:resnet18", "timm:efficientnet_b0", "timm:vit_tiny_patch16_224")
BATCH = 16
CLASSES = 10


def images_per_s(name: str, threads: int, steps: int) -> tuple[float, float, int]:
    """(training images/s, evaluation images/s, input size) of ``name`` with ``threads`` threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = network_static_info(name, CLASSES, 3).config
    size = cfg.input_size[0]
    model = build_classifier(name, CLASSES, (3, size, size), preprocess=Preprocess(cfg.mean, cfg.std))
    config = TrainConfig(model=name)
    optimizer = build_optimizer(config.optimizer, param_groups(model, config), config)
    x = torch.randint(0, 256, (BATCH, 3, size, size), dtype=torch.uint8)
    y = torch.randint(0, CLASSES, (BATCH,))

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def eval_step() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    return _rate(train_step, steps), _rate(eval_step, steps), size


def _rate(step: Callable[[], None], steps: int) -> float:
    step()  # warm-up: allocator, kernels
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - start)


LISTING = """
import sys, time
t = time.perf_counter(); import torch; a = time.perf_counter() - t
t = time.perf_counter(); from ignite_app.models import zoo; b = time.perf_counter() - t
lazy = "torchvision" not in sys.modules and "timm" not in sys.modules
t = time.perf_counter(); n = len(zoo.list_models()); c = time.perf_counter() - t
t = time.perf_counter(); zoo.list_models("resnet*"); d = time.perf_counter() - t
print(a, b, lazy, c, n, d)
"""


def listing_cost() -> list[tuple[str, str]]:
    """Seconds for, in a fresh process: import torch; import the zoo; the first and a second list_models()."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", LISTING], capture_output=True, text=True, check=True,
                         cwd=root).stdout.split()
    a, b, lazy, c, n, d = float(out[0]), float(out[1]), out[2] == "True", float(out[3]), int(out[4]), float(out[5])
    return [("import torch", f"{a:.2f} s"),
            (f"import the zoo module on top ({'torchvision, timm not imported' if lazy else 'IMPORTS THEM'})",
             f"{b:.3f} s"),
            (f"first list_models(): {n} names (imports torchvision and timm)", f"{c:.2f} s"),
            ("second list_models('resnet*')", f"{d * 1000:.1f} ms")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all configurations (default 3)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (default 1 2)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    args = parser.parse_args()
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    sizes = {}
    for _ in range(args.rounds):
        for name in args.networks:
            for threads in args.threads:
                train, evaluate, sizes[name] = images_per_s(name, threads, args.steps)
                runs.setdefault((name, threads), []).append((train, evaluate))
    print(f"CPU images/s, batch {BATCH}, {args.steps} timed steps after 1 warm-up, best and median of {args.rounds} "
          f"interleaved rounds (torch {torch.__version__})\n")
    print("| network | input | threads | train (best) | train (median) | eval (best) | eval (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (name, threads), values in runs.items():
        train, evaluate = [v[0] for v in values], [v[1] for v in values]
        print(f"| {name} | {sizes[name]}x{sizes[name]} | {threads} | {max(train):.1f} | "
              f"{statistics.median(train):.1f} | {max(evaluate):.1f} | {statistics.median(evaluate):.1f} |")
    print("\nlisting the names (a fresh process)")
    for what, value in listing_cost():
        print(f"  {what:<68} {value:>9}")


if __name__ == "__main__":
    main()
