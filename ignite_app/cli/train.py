"""``ignite-app train`` (``scripts/train.py``): options generated from :class:`~ignite_app.config.TrainConfig`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ignite_app.cli.options import build_parser as build_options_parser
from ignite_app.cli.options import parse_options, preload_plugins
from ignite_app.config import TrainConfig
from ignite_app.errors import UsageError
from ignite_app.runstate.fileio import output_path_problem

PROG = "train.py"
DESCRIPTION = ("Train an image classifier with pytorch-ignite; outputs go to OUTPUT_DIR/RUN_NAME and TensorBoard "
               "(tensorboard --logdir runs).")
# How --help groups the options (every command-line field is in exactly one group; a test checks it).
HELP_GROUPS: dict[str, tuple[str, ...]] = {
    "data": ("dataset", "data_dir", "label_map", "val_split", "image_size", "channels", "augment", "on_bad_image",
             "batch_size", "num_workers", "epoch_length"),
    "data at scale": ("download", "cache", "crop_fraction", "scale_min", "stats_images", "check_images", "prefetch"),
    "model and optimisation": ("model", "epochs", "optimizer", "lr", "momentum", "weight_decay"),
    "learning-rate schedule and stopping": ("lr_scheduler", "plateau_monitor", "plateau_factor", "plateau_patience",
                                            "warmup_epochs", "early_stopping_patience"),
    "run and outputs": ("seed", "device", "output_dir", "run_name", "log_every", "log_weights", "log_grads",
                        "progress"),
    "checkpoints and resuming": ("checkpoint_every", "keep_last", "resume"),
    "several processes and GPUs": ("backend", "nproc_per_node", "amp", "channels_last"),
    "transfer learning": ("pretrained", "weights", "normalization", "drop_path", "freeze_epochs",
                          "backbone_lr_scale"),
    "extending": ("plugins", "handlers"),
    "scores and the best model": ("best_metric", "pr_curves", "log_mistakes"),
    "training recipe": ("label_smoothing", "mixup_alpha", "cutmix_alpha", "mix_prob", "ema_decay", "ema_warmup_steps",
                        "accumulate_steps", "clip_grad_norm", "class_weights", "sampler", "auto_augment",
                        "random_erasing"),
}


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """One flag per config field: its type, choices and default come from the dataclass; and ``--list-models``."""
    parser = build_options_parser(TrainConfig, prog, DESCRIPTION, HELP_GROUPS, config_file=True)
    parser.add_argument("--list-models", nargs="?", metavar="PATTERN", action=ListModels, default=argparse.SUPPRESS,
                        help="print the names --model takes (registered, torchvision:NAME, timm:NAME), those "
                             "matching PATTERN if given ('resnet*', 'timm:vit_*'; case-insensitive), and exit")
    return parser


class ListModels(argparse.Action):
    """``--list-models [PATTERN]``: print the matching model names, one per line, and exit 0 (as ``--help`` does)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from ignite_app.models.zoo import list_models  # imports torchvision and timm: only when asked
        from ignite_app.registry import MODELS

        names = list_models(values if isinstance(values, str) else None, MODELS.names())
        try:
            print("\n".join(names) if names else f"no model name matches {values!r}", flush=True)
        except BrokenPipeError:  # `--list-models | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python exits
        parser.exit(0)


def parse_config(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> TrainConfig:
    """Parse ``argv`` into a validated config; a bad value exits with code 2 and names the flag."""
    return parse_options(TrainConfig, argv, parser or build_parser())


def output_dir_problem(config: TrainConfig) -> str | None:
    """Why the run folder cannot be written where the options put it (a message naming the flags), or None."""
    fix = "pass a folder you can write to: the run folders are created in it"
    if config.resume is None:  # a new run folder inside --output-dir
        reason = output_path_problem(config.output_dir, folder=True)
        return reason and f"--output-dir {config.output_dir} {reason}; {fix}"
    if config.resume == "auto":  # the named run folder, which may exist already: only it is written
        run_dir = config.output_dir / str(config.run_name)
        reason = output_path_problem(run_dir, folder=True)
        return reason and f"--output-dir {config.output_dir} --run-name {config.run_name}: the run folder " \
                          f"{run_dir} {reason}; {fix}"
    return None  # --resume PATH: the run continues in the checkpoint's folder, whatever --output-dir says


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Entry point of ``scripts/train.py``: parse, train, report. Returns the process exit code."""
    preload_plugins(argv, prog)  # first: the names the plugins register are valid options, listed in --help
    parser = build_parser(prog)
    config = parse_config(argv, parser)  # --help and bad options exit here, before torch is imported (~4 s)
    problem = output_dir_problem(config)
    if problem:  # before the data is loaded: a run would otherwise fail at its first write, with a traceback
        parser.exit(2, f"{parser.prog}: error: {problem}\n")

    from ignite_app.cli.worker import launch
    from ignite_app.plugins import load_plugins

    try:
        load_plugins(config.handlers)  # a bad --handler fails here, before anything is built
        return launch(config, parser.prog, None if argv is None else list(argv))
    except UsageError as e:  # the options parsed, but the run cannot start as asked: no usage text needed
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    return 2  # unreachable: parser.exit raises SystemExit


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
