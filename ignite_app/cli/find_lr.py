"""``ignite-app find-lr`` (``scripts/find_lr.py``): the learning-rate finder, with train.py's options.

Every ``train.py`` option is accepted (``--config FILE`` too) and means the same, plus the finder's range
(``--start-lr``, ``--end-lr``, ``--num-iter``). It trains one process from fresh weights: ``--resume``,
``--nproc-per-node`` and ``--backend`` are refused.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ignite_app.cli.options import parse_known_options, preload_plugins
from ignite_app.cli.train import build_parser as build_train_parser
from ignite_app.cli.train import output_dir_problem
from ignite_app.config import TrainConfig
from ignite_app.errors import UsageError

PROG = "find_lr.py"
DESCRIPTION = ("Find a learning rate: train with an exponentially growing lr and plot the loss (ignite's "
               "FastaiLRFinder); writes OUTPUT_DIR/RUN_NAME/lr_finder.csv, lr_finder.png and a TensorBoard curve "
               "and prints the suggested lr. Takes every train.py option.")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """train.py's parser, with the finder's range in a group of its own."""
    parser = build_train_parser(prog)
    parser.description = DESCRIPTION
    group = parser.add_argument_group("learning-rate finder")
    group.add_argument("--start-lr", type=float, default=1e-6, metavar="LR", help="first lr (default: 1e-06)")
    group.add_argument("--end-lr", type=float, default=10.0, metavar="LR", help="last lr (default: 10.0)")
    group.add_argument("--num-iter", type=int, default=100, metavar="N",
                       help="batches from the first to the last lr; the finder stops early when the loss diverges "
                            "(default: 100)")
    return parser


def check_finder_options(config: TrainConfig, start_lr: float, end_lr: float, num_iter: int) -> str | None:
    """Why these options cannot run the finder (a message naming the flag), or None."""
    if config.resume is not None:
        return f"--resume {config.resume}: the finder starts from fresh weights and never continues a run; drop it"
    if config.backend is not None or config.nproc_per_node is not None:
        return "the finder runs in one process: drop --backend and --nproc-per-node"
    if not 0 < start_lr < end_lr:
        return f"--start-lr {start_lr:g} and --end-lr {end_lr:g}: need 0 < start < end"
    if num_iter < 3:
        return f"--num-iter {num_iter}: need at least 3 batches to read a slope from"
    return None


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Entry point of ``scripts/find_lr.py``: parse, run the finder, print the suggestion. Returns the exit code."""
    preload_plugins(argv, prog)
    parser = build_parser(prog)
    config, extra = parse_known_options(TrainConfig, argv, parser)
    problem = check_finder_options(config, extra["start_lr"], extra["end_lr"], extra["num_iter"]) or \
        output_dir_problem(config)
    if problem:
        parser.exit(2, f"{parser.prog}: error: {problem}\n")

    from ignite_app.cli.launch import under_torchrun
    from ignite_app.lr_finder import LR_FINDER_CSV, LR_FINDER_PNG, find_lr

    if under_torchrun():
        parser.exit(2, f"{parser.prog}: error: the finder runs in one process, not under torchrun\n")
    try:
        result = find_lr(config, extra["start_lr"], extra["end_lr"], extra["num_iter"])
    except UsageError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    print(f"{len(result.lrs)} batches, lr {result.lrs[0]:.2e} to {result.lrs[-1]:.2e}; lowest loss "
          f"{min(result.losses):.4f} at lr {result.lrs[result.losses.index(min(result.losses))]:.2e}")
    print(f"wrote {result.folder / LR_FINDER_CSV}, {result.folder / LR_FINDER_PNG} and TensorBoard "
          f"(tensorboard --logdir {result.folder})")
    print(f"suggested lr: {result.suggestion:.3g}" if result.suggestion is not None else
          "suggested lr: none (the loss never fell: lower --start-lr)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
