"""Command line of ``scripts/predict.py``: classify image files with a trained model (:mod:`ignite_app.prediction`).

Only the standard library and the option lists are imported up front, so ``--help`` and a bad option answer at
once; torch and the model are loaded once the options are known to be valid.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ignite_app.cli.options import build_parser, parse_options, preload_plugins
from ignite_app.config import BAD_IMAGE_POLICIES, DEVICES, ConfigError, Options, option
from ignite_app.data.formats import IMAGE_EXTENSIONS
from ignite_app.runstate.fileio import atomic_write_text, output_path_problem

PROG = "predict.py"
DESCRIPTION = ("Classify image files with a model trained with --dataset folder: a checkpoint (--checkpoint) or an "
               "exported ONNX or .pt2 file (--model-file; scripts/export.py). Prints CSV: path,label,confidence "
               "(the probability of the label), or writes it to --output.")


@dataclass(frozen=True)
class PredictConfig(Options):
    """The options of ``scripts/predict.py``."""

    inputs: tuple[Path, ...] = option((), "image files, or folders searched recursively for "
                                      + ", ".join(IMAGE_EXTENSIONS), metavar="INPUT", positional=True)
    checkpoint: Path | None = option(None, "best_model.pt or a training checkpoint of a --dataset folder run",
                                     metavar="PATH")
    model_file: Path | None = option(None, "an exported model instead of a checkpoint (scripts/export.py): its "
                                     "metadata gives the classes and the input size; the CSV is the same",
                                     metavar="FILE.onnx|FILE.pt2")
    output: Path | None = option(None, "write the CSV to this file instead of printing it", metavar="FILE.csv")
    top_k: int = option(1, "also give the 2nd..K-th best labels: columns label_2,confidence_2,...", low=1,
                        metavar="K")
    probabilities: bool = option(False, "add one column per class, p_<class>: its probability")
    batch_size: int = option(64, "images per batch", low=1, metavar="N")
    num_workers: int = option(0, "decoding worker processes", low=0, metavar="N")
    device: str = option("auto", "auto picks cuda when it is available", choices=DEVICES)
    on_bad_image: str = option("error", "an input that cannot be decoded stops everything before any output "
                               "(error) or is left out of the output and listed on stderr (skip)",
                               choices=BAD_IMAGE_POLICIES)
    plugins: tuple[str, ...] = option((), "FILE.py or package.module to import first (the training run's own "
                                      "plugins are imported anyway)", metavar="PLUGIN", flag="--plugin")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.checkpoint is not None and self.model_file is not None:
            raise ConfigError(f"--checkpoint {self.checkpoint} and --model-file {self.model_file} are mutually "
                              "exclusive: predict with the checkpoint or with the exported model, not both")
        if self.checkpoint is None and self.model_file is None:
            raise ConfigError("the model is missing: pass --checkpoint PATH (best_model.pt) or --model-file "
                              "FILE.onnx|FILE.pt2 (an exported model)")


def overwritten_input(output: Path, inputs: Sequence[Path]) -> Path | None:
    """The input that writing ``output`` would replace (the same file, spelt any way: ``..``, a link), or None.

    A folder among ``inputs`` is not searched: an output inside it is fine unless it is one of the images found
    there, which the caller checks by passing those.
    """
    for path in inputs:
        try:
            if os.path.samefile(path, output):
                return path
        except OSError:  # the output does not exist yet, or the input is missing (reported later, by name)
            continue
    return None


def _check(parser: argparse.ArgumentParser, args: PredictConfig) -> None:
    """Refuse an unusable --output before torch is imported and the model loaded."""
    if args.output is None:
        return
    problem = output_path_problem(args.output, folder=False)
    if problem:
        fix = f"e.g. {args.output / 'predictions.csv'}" if args.output.is_dir() else "in a folder you can write to"
        parser.exit(2, f"{parser.prog}: error: --output {args.output} {problem}; pass the CSV file to write, {fix}\n")
    _refuse_overwriting(parser, args.output, args.inputs)


def _refuse_overwriting(parser: argparse.ArgumentParser, output: Path, inputs: Sequence[Path]) -> None:
    replaced = overwritten_input(output, inputs)
    if replaced is not None:  # the CSV would be written over the image
        parser.exit(2, f"{parser.prog}: error: --output {output} is the input {replaced}: the CSV would replace it; "
                    f"pass another file, e.g. {replaced.parent / 'predictions.csv'}\n")


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Entry point of ``scripts/predict.py``. Returns the exit code: 0, or 2 for anything refused."""
    preload_plugins(argv, prog)
    parser = build_parser(PredictConfig, prog, DESCRIPTION)
    args = parse_options(PredictConfig, argv, parser)
    _check(parser, args)

    # --help and bad options have exited above, before torch is imported (~4 s)
    from ignite_app.errors import UsageError
    from ignite_app.prediction import collect_inputs, predictions_csv

    try:
        files = collect_inputs(args.inputs)
        if args.output is not None and args.output.suffix.lower() in IMAGE_EXTENSIONS:
            _refuse_overwriting(parser, args.output, files)  # an image found in an input folder
        classes, run = _load_model(args)
        if args.top_k > len(classes):
            parser.error(f"--top-k {args.top_k}: the model has {len(classes)} classes; pass at most {len(classes)}")
        predictions, skipped = run(files)
    except UsageError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    for bad in skipped:
        print(f"{prog}: skipped unreadable image {bad.path}: {bad.reason}", file=sys.stderr)
    text = predictions_csv(predictions, args.top_k, classes if args.probabilities else None)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.output, text)
        print(f"wrote {len(predictions)} predictions to {args.output}", file=sys.stderr)
    return 0


def _load_model(args: PredictConfig) -> tuple[tuple[str, ...], Any]:
    """The model's classes and a function that classifies files with it: the checkpoint's or the exported one's."""
    from ignite_app.prediction import predict, predict_artifact

    options = dict(top_k=args.top_k, batch_size=args.batch_size, num_workers=args.num_workers,
                   on_bad_image=args.on_bad_image, probabilities=args.probabilities)
    if args.model_file is not None:
        from ignite_app.artifacts import load_artifact

        artifact = load_artifact(args.model_file)
        return artifact.classes, lambda files: predict_artifact(artifact, files, **options)
    from ignite_app.device import resolve_device
    from ignite_app.evaluation import load_saved_model

    saved = load_saved_model(args.checkpoint)
    return saved.classes, lambda files: predict(saved, files, device=resolve_device(args.device), **options)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
