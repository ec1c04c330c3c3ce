"""The update-to-weight ratio of each layer in TensorBoard (``update_ratio/<parameter>``), as a command-line plugin:

    python scripts/train.py --handler examples/update_ratio.py:attach

or run directly: ``python examples/update_ratio.py [--every N] [train.py options...]``.

``||w_after - w_before|| / ||w_before||`` over one iteration, per parameter: a classic health check of the
learning rate (around 1e-3 is the usual rule of thumb; far below, the layer barely learns; far above, it is being
rewritten every step). The app logs the gradients' global norm itself (``--clip-grad-norm``, ``train/grad_norm``);
this shows how far each layer actually moves.
"""

import argparse
import sys
from pathlib import Path

import torch
from ignite.engine import Engine, Events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

EVERY = 5  # iterations between two points


def attach(app, every: int = EVERY) -> None:
    """Every ``every`` iterations, log each parameter's update-to-weight ratio (rank 0 writes TensorBoard)."""
    tb_logger = app.handlers.tb_logger
    if tb_logger is None:  # not rank 0: nothing to write to
        return
    named = [(name, p) for name, p in app.model.named_parameters() if p.requires_grad]
    before: dict[str, torch.Tensor] = {}

    @app.trainer.on(Events.ITERATION_STARTED(every=every))
    def remember(trainer: Engine) -> None:
        before.update({name: p.detach().clone() for name, p in named})

    @app.trainer.on(Events.ITERATION_COMPLETED(every=every))
    def log_ratio(trainer: Engine) -> None:
        for name, p in named:
            old = before.pop(name)
            ratio = (p.detach() - old).norm() / old.norm().clamp(min=1e-12)
            tag = "update_ratio/" + name.removeprefix("module.").replace(".", "/")
            tb_logger.writer.add_scalar(tag, float(ratio), trainer.state.iteration)


if __name__ == "__main__":
    from ignite_app import build
    from ignite_app.cli.train import parse_config
    from ignite_app.runstate.rundir import enable_console_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=EVERY, help="iterations between two points")
    args, train_args = parser.parse_known_args()
    enable_console_logging()
    app = build(parse_config(train_args))
    attach(app, every=args.every)
    app.run()
