"""A gradient-norm logger that writes to TensorBoard (``train/grad_norm``), as a command-line plugin:

    python scripts/train.py --handler examples/grad_norm.py:attach

or run directly: ``python examples/grad_norm.py [--every N] [train.py options...]``.
"""

import argparse
import sys
from pathlib import Path

import torch
from ignite.engine import Engine, Events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

EVERY = 5  # iterations between two points


def attach(app, every: int = EVERY) -> None:
    """Log the global L2 norm of the gradients every ``every`` iterations (rank 0 writes TensorBoard)."""
    tb_logger = app.handlers.tb_logger
    if tb_logger is None:  # not rank 0: nothing to write to
        return
    params = [p for p in app.model.parameters() if p.requires_grad]

    # At ITERATION_COMPLETED the step's gradients are still there: they are cleared at the start of the next step.
    @app.trainer.on(Events.ITERATION_COMPLETED(every=every))
    def log_grad_norm(trainer: Engine) -> None:
        norms = [p.grad.detach().norm() for p in params if p.grad is not None]
        total = torch.linalg.vector_norm(torch.stack(norms)).item() if norms else 0.0
        tb_logger.writer.add_scalar("train/grad_norm", total, trainer.state.iteration)


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
