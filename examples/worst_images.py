"""The worst-classified validation images in TensorBoard (IMAGES tab, ``val/worst_images``), as a plugin:

    python scripts/train.py --handler examples/worst_images.py:attach

or run directly: ``python examples/worst_images.py [--count K] [train.py options...]``. It collects per-sample
losses on the evaluator and writes the K worst images when the app fires ``AppEvents.VALIDATION_COMPLETED``,
with their true and predicted classes in the TEXT tab (``val/worst_images``). With several processes, rank 0
shows the worst of its own share of the validation set.
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ignite_app.events import AppEvents  # noqa: E402

COUNT = 16
DISPLAY_SIZE = 64  # pixels: tiny images (digits are 8x8) are scaled up, nearest-neighbour, to stay sharp


class WorstImages:
    """The ``count`` validation samples with the highest loss, kept across the batches of one validation."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.reset(None)

    def reset(self, engine: Engine | None) -> None:
        self.losses = torch.empty(0)
        self.images = torch.empty(0)
        self.labels = torch.empty(0, dtype=torch.long)
        self.predictions = torch.empty(0, dtype=torch.long)

    def update(self, engine: Engine) -> None:
        logits, y = engine.state.output
        images = engine.state.batch[0]  # the batch as the loader gave it: raw pixels (uint8), on the CPU
        losses = F.cross_entropy(logits.float(), y, reduction="none").cpu()
        self.losses = torch.cat([self.losses, losses])
        self.images = torch.cat([self.images, images]) if len(self.images) else images.clone()
        self.labels = torch.cat([self.labels, y.cpu()])
        self.predictions = torch.cat([self.predictions, logits.argmax(dim=1).cpu()])
        keep = self.losses.topk(min(self.count, len(self.losses))).indices  # (K,) the worst so far
        self.losses, self.images = self.losses[keep], self.images[keep]
        self.labels, self.predictions = self.labels[keep], self.predictions[keep]


def attach(app, count: int = COUNT) -> WorstImages:
    """Collect the worst samples of each validation and write them to TensorBoard after it."""
    worst = WorstImages(count)
    app.evaluator.add_event_handler(Events.STARTED, worst.reset)
    app.evaluator.add_event_handler(Events.ITERATION_COMPLETED, worst.update)
    tb_logger = app.handlers.tb_logger

    @app.trainer.on(AppEvents.VALIDATION_COMPLETED)
    def write(trainer: Engine) -> None:
        if tb_logger is None or not len(worst.images):
            return
        images = worst.images.float() / 255  # the pixels as they are on disk: nothing to undo
        images = F.interpolate(images, size=(DISPLAY_SIZE, DISPLAY_SIZE), mode="nearest")
        step = trainer.state.epoch
        tb_logger.writer.add_images("val/worst_images", images, step, dataformats="NCHW")
        rows = [f"| {i} | {app.classes[t]} | {app.classes[p]} | {loss:.3f} |" for i, (t, p, loss) in
                enumerate(zip(worst.labels.tolist(), worst.predictions.tolist(), worst.losses.tolist()))]
        tb_logger.writer.add_text("val/worst_images", "\n".join(["| # | true | predicted | loss |",
                                                                 "|---|---|---|---|", *rows]), step)

    return worst


if __name__ == "__main__":
    from ignite_app import build
    from ignite_app.cli.train import parse_config
    from ignite_app.runstate.rundir import enable_console_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=COUNT)
    args, train_args = parser.parse_known_args()
    enable_console_logging()
    app = build(parse_config(train_args))
    attach(app, count=args.count)
    app.run()
