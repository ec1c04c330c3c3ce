"""Command line of ``scripts/predict.py``: classify image files with a trained model (:mod:`ignite_app.prediction`).

Only the standard library and the option lists are imported up front, so ``--help`` and a bad option answer at
once; torch and the model are loaded once the options are known to be valid.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ignite_app.config import BAD_IMAGE_POLICIES, DEVICES, IMAGE_EXTENSIONS
from ignite_app.fileio import atomic_write_text, output_path_problem

PROG = "predict.py"


def build_parser() -> argparse.ArgumentParser:
    """The options of ``scripts/predict.py``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Classify image files with a model trained with --dataset folder. Prints CSV: "
        "path,label,confidence (the probability of the label), or writes it to --output.")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="image files, or folders searched recursively for " + ", ".join(IMAGE_EXTENSIONS))
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="PATH",
                        help="best_model.pt or a training checkpoint of a --dataset folder run")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE.csv",
                        help="write the CSV to this file instead of printing it")
    parser.add_argument("--top-k", type=int, default=1, metavar="K",
                        help="also give the 2nd..K-th best labels: columns label_2,confidence_2,... (default: 1)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per batch (default: 64)")
    parser.add_argument("--num-workers", type=int, default=0, metavar="N",
                        help="decoding worker processes (default: 0)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto picks cuda when it is available (default: auto)")
    parser.add_argument("--on-bad-image", choices=BAD_IMAGE_POLICIES, default="error",
                        help="an input that cannot be decoded stops everything before any output (error) or is "
                        "left out of the output and listed on stderr (skip) (default: error)")
    return parser


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


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad options and an unusable --output before torch is imported and the model loaded."""
    for flag, value, low in (("--top-k", args.top_k, 1), ("--batch-size", args.batch_size, 1),
                             ("--num-workers", args.num_workers, 0)):
        if value < low:
            parser.error(f"{flag} must be >= {low}, got {value}")
    if args.output is None:
        return
    problem = output_path_problem(args.output, folder=False)
    if problem:
        fix = f"e.g. {args.output / 'predictions.csv'}" if args.output.is_dir() else "in a folder you can write to"
        parser.exit(2, f"{PROG}: error: --output {args.output} {problem}; pass the CSV file to write, {fix}\n")
    _refuse_overwriting(parser, args.output, args.inputs)


def _refuse_overwriting(parser: argparse.ArgumentParser, output: Path, inputs: Sequence[Path]) -> None:
    replaced = overwritten_input(output, inputs)
    if replaced is not None:  # the CSV would be written over the image
        parser.exit(2, f"{PROG}: error: --output {output} is the input {replaced}: the CSV would replace it; "
                    f"pass another file, e.g. {replaced.parent / 'predictions.csv'}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scripts/predict.py``. Returns the exit code: 0, or 2 for anything refused."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)

    # --help and bad options have exited above, before torch is imported (~4 s)
    from ignite_app.app import resolve_device
    from ignite_app.errors import UsageError
    from ignite_app.evaluation import load_saved_model
    from ignite_app.prediction import collect_inputs, predict, predictions_csv

    try:
        files = collect_inputs(args.inputs)
        if args.output is not None and args.output.suffix.lower() in IMAGE_EXTENSIONS:
            _refuse_overwriting(parser, args.output, files)  # an image found in an input folder
        saved = load_saved_model(args.checkpoint)
        if args.top_k > len(saved.classes):
            parser.error(f"--top-k {args.top_k}: the model has {len(saved.classes)} classes; pass at most "
                         f"{len(saved.classes)}")
        predictions, skipped = predict(saved, files, args.top_k, args.batch_size, resolve_device(args.device),
                                       args.num_workers, args.on_bad_image)
    except UsageError as e:
        parser.exit(2, f"{PROG}: error: {e}\n")
    for bad in skipped:
        print(f"{PROG}: skipped unreadable image {bad.path}: {bad.reason}", file=sys.stderr)
    text = predictions_csv(predictions, args.top_k)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.output, text)
        print(f"wrote {len(predictions)} predictions to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
