"""Command line of ``scripts/train.py``, generated from :class:`~ignite_app.config.TrainConfig`."""

from __future__ import annotations

import argparse
import shlex
import sys
import typing
from collections.abc import Sequence
from dataclasses import MISSING, fields
from pathlib import Path

from ignite_app.config import ConfigError, TrainConfig, flag_name
from ignite_app.errors import UsageError
from ignite_app.fileio import output_path_problem

# How --help groups the options (every config field is in exactly one group; a test checks it).
HELP_GROUPS: dict[str, tuple[str, ...]] = {
    "data": ("dataset", "data_dir", "label_map", "val_split", "image_size", "channels", "augment", "on_bad_image",
             "batch_size", "num_workers", "epoch_length"),
    "model and optimisation": ("model", "epochs", "optimizer", "lr", "momentum", "weight_decay"),
    "learning-rate schedule and stopping": ("lr_scheduler", "plateau_monitor", "plateau_factor", "plateau_patience",
                                            "warmup_epochs", "early_stopping_patience"),
    "run and outputs": ("seed", "device", "output_dir", "run_name", "log_every", "log_weights", "log_grads",
                        "progress"),
    "checkpoints and resuming": ("checkpoint_every", "keep_last", "resume"),
    "several processes and GPUs": ("backend", "nproc_per_node", "amp", "channels_last"),
    "extending": ("handlers",),
}


def build_parser(prog: str = "train.py") -> argparse.ArgumentParser:
    """One flag per config field: its type, choices and default come from the dataclass."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train an image classifier with pytorch-ignite; outputs go to OUTPUT_DIR/RUN_NAME and "
        "TensorBoard (tensorboard --logdir runs).",
    )
    hints = typing.get_type_hints(TrainConfig)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for title, names in HELP_GROUPS.items():
        group = parser.add_argument_group(title)
        groups.update(dict.fromkeys(names, group))
    for f in fields(TrainConfig):
        meta = f.metadata
        default = f.default if f.default is not MISSING else None
        shown = meta.get("default_text") or default
        shown = "" if shown is None else f" (default: {shown})"  # a None default is described in the help
        kwargs: dict = {"dest": f.name, "default": default, "help": meta["help"] + shown}
        base = _base_type(hints[f.name])
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif base is tuple:
            kwargs.update(action="append", default=None, help=f"{meta['help']} (default: none)")
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
        else:
            kwargs["type"] = base
            if meta.get("choices"):
                kwargs["choices"] = meta["choices"]
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
        groups.get(f.name, parser).add_argument(flag_name(f.name), **kwargs)
    return parser


def _base_type(hint: object) -> type:
    if typing.get_origin(hint) is tuple:
        return tuple
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return base if base in (bool, int, float, str, Path) else str  # type: ignore[return-value]


def parse_config(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> TrainConfig:
    """Parse ``argv`` into a validated config; a bad value exits with code 2 and names the flag."""
    parser = parser or build_parser()
    values = vars(parser.parse_args(argv))
    for name, value in values.items():
        if isinstance(TrainConfig.__dataclass_fields__[name].default, tuple):  # repeatable: None when absent
            values[name] = tuple(value or ())
    try:
        return TrainConfig(**values)
    except ConfigError as e:
        parser.error(str(e))
        raise  # unreachable: parser.error exits


def resume_command(prog: str, argv: Sequence[str] | None, run_name: str) -> str:
    """The command that continues an interrupted run: the same options, plus ``--resume auto --run-name``."""
    args = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--resume", "--run-name"):
            skip = True
        elif not arg.startswith(("--resume=", "--run-name=")):
            kept.append(arg)
    return shlex.join(["python", f"scripts/{prog}", *kept, "--resume", "auto", "--run-name", run_name])


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scripts/train.py``: parse, train, report. Returns the process exit code."""
    parser = build_parser()
    config = parse_config(argv, parser)  # --help and bad options exit here, before torch is imported (~4 s)
    problem = output_dir_problem(config)
    if problem:  # before the data is loaded: a run would otherwise fail at its first write, with a traceback
        parser.exit(2, f"{parser.prog}: error: {problem}\n")

    from ignite_app.distributed import launch
    from ignite_app.plugins import load_plugins

    try:
        load_plugins(config.handlers)  # a bad --handler fails here, before anything is built
        return launch(config, parser.prog, None if argv is None else list(argv))
    except UsageError as e:  # the options parsed, but the run cannot start as asked: no usage text needed
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    return 2  # unreachable: parser.exit raises SystemExit


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
