"""Command line of ``scripts/evaluate.py``: evaluate a checkpoint, print its report, write the two report CSVs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ignite_app.config import BACKENDS, BAD_IMAGE_POLICIES, DATASETS, DEVICES, ConfigError
from ignite_app.errors import UsageError
from ignite_app.fileio import output_path_problem

PROG = "evaluate.py"


def build_parser() -> argparse.ArgumentParser:
    """The options of ``scripts/evaluate.py``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate a trained model: the model, its classes, image size, channels and normalisation "
        "constants come from the checkpoint. Without --dataset/--data-dir it is evaluated on the validation data "
        "of its training run.")
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="PATH",
                        help="best_model.pt or a training checkpoint (training_<iteration>.pt)")
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="evaluate on this dataset instead of the training run's (default: the checkpoint's)")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="image folders to evaluate on: DIR/val/<class>/* when DIR has train/ and val/, else "
                        "DIR/<class>/* (all of it, or its --val-split share); the class folders must be the "
                        "checkpoint's classes (default: the training run's folder)")
    parser.add_argument("--val-split", type=float, default=None, metavar="FRACTION",
                        help="evaluate only the validation share of a flat DIR/<class>/* folder, split as in "
                        "training (default: the training run's, unless --data-dir is given)")
    parser.add_argument("--on-bad-image", choices=BAD_IMAGE_POLICIES, default=None,
                        help="an image that cannot be decoded stops the evaluation (error) or is left out and "
                        "listed (skip) (default: the training run's)")
    parser.add_argument("--output", type=Path, default=None, metavar="DIR",
                        help="write confusion_matrix.csv and classification_report.csv into DIR (created if needed)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="samples per batch in each process (default: the training run's)")
    parser.add_argument("--num-workers", type=int, default=None, metavar="N",
                        help="data-loading worker processes (default: the training run's)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto picks cuda when it is available (default: auto)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="torch.distributed backend, needed with --nproc-per-node and under torchrun")
    parser.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                        help="evaluate in N processes on this machine, each on its share of the data")
    return parser


@dataclass(frozen=True)
class EvaluationRequest:
    """The parsed options, as one picklable value for the evaluation processes."""

    checkpoint: Path
    dataset: str | None
    data_dir: Path | None
    val_split: float | None
    on_bad_image: str | None
    output: Path | None
    batch_size: int | None
    num_workers: int | None
    device: str


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--num-workers", args.num_workers, 0),
                             ("--nproc-per-node", args.nproc_per_node, 1)):
        if value is not None and value < low:
            parser.error(f"{flag} must be >= {low}, got {value}")
    if args.val_split is not None and not 0 < args.val_split < 1:
        parser.error(f"--val-split must be > 0 and < 1, got {args.val_split}")
    if args.nproc_per_node is not None and args.backend is None:
        parser.error(f"--nproc-per-node {args.nproc_per_node} needs --backend gloo (CPU) or nccl (GPUs)")
    problem = output_path_problem(args.output, folder=True) if args.output is not None else None
    if problem:  # before the model is loaded: the report would otherwise be lost to a traceback at the end
        parser.exit(2, f"{PROG}: error: --output {args.output} {problem}; pass a folder you can write to: the two "
                    "CSV files are written into it\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scripts/evaluate.py``. Returns the exit code: 0, or 2 for anything refused."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)  # --help and bad options exit before torch is imported (~4 s)

    from ignite_app.distributed import run_processes

    request = EvaluationRequest(args.checkpoint, args.dataset, args.data_dir, args.val_split, args.on_bad_image,
                                args.output, args.batch_size, args.num_workers, args.device)
    try:
        return run_processes(evaluation_worker, (request,), args.backend, args.nproc_per_node)
    except UsageError as e:
        parser.exit(2, f"{PROG}: error: {e}\n")
    return 2  # unreachable: parser.exit raises SystemExit


def evaluation_worker(local_rank: int, request: EvaluationRequest) -> int:
    """One process of the evaluation: every process evaluates its share, rank 0 prints and writes the report."""
    import logging

    from ignite_app.app import resolve_device
    from ignite_app.distributed import setup_process
    from ignite_app.evaluation import evaluate_saved, evaluation_config, evaluation_data, load_saved_model
    from ignite_app.reports import write_report_csvs

    rank = setup_process()
    try:
        saved = load_saved_model(request.checkpoint)
        config = evaluation_config(saved, request.dataset, request.data_dir, request.val_split,
                                   request.on_bad_image, request.num_workers)
        dataset, skipped = evaluation_data(saved, config)
        report = evaluate_saved(saved, dataset, request.batch_size or config.batch_size,
                                resolve_device(request.device), config.num_workers)
    except (UsageError, ConfigError) as e:
        if rank == 0:
            print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if rank != 0:
        return 0
    if skipped:
        logging.getLogger("ignite_app").warning("left out %d unreadable image(s):\n  %s", len(skipped),
                                                "\n  ".join(skipped))
    where = f"{config.data_dir}" if config.dataset == "folder" else "validation split"
    print(f"checkpoint {saved.path}: {len(saved.classes)} classes, input {'x'.join(map(str, saved.input_shape))}")
    print(f"data: {config.dataset} ({where}), {report.num_samples} images")
    print(report.to_text())
    if request.output is not None:
        # the same two files, in the same format, as a training run's reports/ folder
        matrix_csv, report_csv = write_report_csvs(request.output, report)
        print(f"wrote {matrix_csv} and {report_csv}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
