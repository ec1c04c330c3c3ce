"""The learning-rate finder (``scripts/find_lr.py``): ignite's ``FastaiLRFinder`` on a bare trainer.

The trainer is the app's own step (the same data, model, optimizer, loss, mixing and clipping as ``train.py``
with the same options) with none of the app's handlers attached: no lr scheduler, checkpoints, validation or
TensorBoard reports. The finder raises the lr exponentially from ``start_lr`` to ``end_lr`` over ``num_iter``
batches (one optimizer step per batch: ``--accumulate-steps`` does not apply), records the smoothed loss, stops when
it diverges, and suggests the lr where the loss falls fastest. It writes into a new folder
``OUTPUT_DIR/<run-name>/`` (never an existing one): ``lr_finder.csv`` (``lr,loss``), ``lr_finder.png`` and the
curve in TensorBoard (``lr_finder/loss`` and ``lr_finder/lr``, step = iteration).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from ignite.handlers import FastaiLRFinder
from ignite.utils import manual_seed

from ignite_app.config import TrainConfig
from ignite_app.data.loaders import build_loaders
from ignite_app.data.spec import build_data
from ignite_app.device import resolve_device
from ignite_app.engines import StepOptions, create_trainer
from ignite_app.handlers import attach_data_order
from ignite_app.models import build_optimizer, param_groups
from ignite_app.recipe.accumulation import StepGroups
from ignite_app.recipe.wiring import build_train_recipe, build_training_loss
from ignite_app.runstate.fileio import atomic_write, atomic_write_text
from ignite_app.runstate.rundir import create_run_dir, default_run_name
from ignite_app.transfer import build_model, resolve_input_options

log = logging.getLogger("ignite_app")

LR_FINDER_CSV = "lr_finder.csv"
LR_FINDER_PNG = "lr_finder.png"
LR_FINDER_TAGS = ("lr_finder/loss", "lr_finder/lr")


@dataclass(frozen=True)
class LRFinderResult:
    """The curve (``lrs[i]``, ``losses[i]``: the smoothed loss after the batch trained with ``lrs[i]``), the
    suggested lr (``None`` when the curve has no falling part to read it from) and the folder written."""

    lrs: list[float]
    losses: list[float]
    suggestion: float | None
    folder: Path


def find_lr(config: TrainConfig, start_lr: float = 1e-6, end_lr: float = 10.0, num_iter: int = 100) -> LRFinderResult:
    """Run the finder with ``config``'s data, model, optimizer and loss; write its outputs into a new run folder.

    Raises:
        UsageError: the run folder exists already (it is never written into), or the data cannot be used.
    """
    device = resolve_device(config.device)
    config = resolve_input_options(config)  # --image-size and --normalization from a pretrained network, as training
    bundle = build_data(config)
    train_loader, _ = build_loaders(bundle, config, pin_memory=device.type == "cuda")
    manual_seed(config.seed)
    # the network, its starting weights (--pretrained, --weights) and its frozen backbone as training builds them
    model = build_model(config, bundle, len(train_loader)).classifier.to(device)
    optimizer = build_optimizer(config.optimizer, param_groups(model, config), config)
    options = StepOptions(device, non_blocking=device.type == "cuda", amp=config.amp,
                          channels_last=config.channels_last)
    # one optimizer step per batch: the finder moves the lr after every iteration
    recipe = replace(build_train_recipe(config, len(bundle.classes), rank=0), groups=StepGroups(1))
    scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
    trainer = create_trainer(model, optimizer, build_training_loss(config, bundle, device), options, scaler, recipe)
    attach_data_order(trainer, train_loader.batch_sampler)  # each epoch its own order, as in training

    paths = create_run_dir(config.output_dir, config.run_name or f"lr-finder-{default_run_name()}")
    finder = FastaiLRFinder()
    with finder.attach(trainer, {"model": model, "optimizer": optimizer}, output_transform=lambda out: out["loss"],
                       start_lr=start_lr, end_lr=end_lr, num_iter=num_iter) as running:
        running.run(train_loader)
    history = finder.get_results()
    # with several parameter groups (no decay on norms and biases) ignite records one lr per group, all equal: the
    # finder sets the same value on every group
    lrs, losses = [float(_first(v)) for v in history["lr"]], [float(v) for v in history["loss"]]
    try:
        suggestion: float | None = float(_first(finder.lr_suggestion()))
    except RuntimeError as e:  # the loss rose from the start: nothing to suggest
        log.warning("no lr suggested: %s", e)
        suggestion = None
    result = LRFinderResult(lrs, losses, suggestion, paths.root)
    write_outputs(result)
    return result


def _first(value: Any) -> Any:
    """The first parameter group's value of a per-group list, or the value itself."""
    return value[0] if isinstance(value, (list, tuple)) else value


def write_outputs(result: LRFinderResult) -> None:
    """``lr_finder.csv``, ``lr_finder.png`` and the TensorBoard curve, into ``result.folder``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["lr", "loss"])
    writer.writerows([repr(lr), repr(loss)] for lr, loss in zip(result.lrs, result.losses))
    atomic_write_text(result.folder / LR_FINDER_CSV, buffer.getvalue())
    png = curve_png(result)
    atomic_write(result.folder / LR_FINDER_PNG, lambda f: f.write(png))
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(result.folder)) as tb:
        for step, (lr, loss) in enumerate(zip(result.lrs, result.losses), start=1):
            tb.add_scalar(LR_FINDER_TAGS[0], loss, step)
            tb.add_scalar(LR_FINDER_TAGS[1], lr, step)


def curve_png(result: LRFinderResult) -> bytes:
    """The loss against the lr (log scale), the suggestion marked, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(result.lrs, result.losses)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss (smoothed)")
    finite = [v for v in result.losses if math.isfinite(v)]
    if finite:  # a diverged tail would stretch the axis until the rest of the curve is a flat line
        low, high = min(finite), min(max(finite), 2 * abs(finite[0]))
        axes.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    if result.suggestion is not None:
        axes.axvline(result.suggestion, color="tab:red", linestyle="--", label=f"suggested lr {result.suggestion:.2e}")
        axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
