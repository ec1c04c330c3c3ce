"""``ignite-app evaluate`` (``scripts/evaluate.py``): evaluate a checkpoint, print its report, write the report CSVs.

The options are the typed :class:`EvaluateConfig`, turned into a command line like the training one's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ignite_app.cli.options import build_parser, parse_options, preload_plugins
from ignite_app.config import BACKENDS, BAD_IMAGE_POLICIES, DEVICES, ConfigError, Options, option
from ignite_app.errors import UsageError
from ignite_app.registry import DATASETS
from ignite_app.runstate.fileio import output_path_problem

PROG = "evaluate.py"
EVAL_SPLITS = ("val", "test")
DESCRIPTION = ("Evaluate a trained model: the model, its classes, image size, channels and normalisation come from "
               "the checkpoint. Without --dataset/--data-dir it is evaluated on the validation data of its training "
               "run.")


@dataclass(frozen=True)
class EvaluateConfig(Options):
    """The options of ``scripts/evaluate.py``; one picklable value for the evaluation processes."""

    checkpoint: Path = option(None, "best_model.pt or a training checkpoint (training_<iteration>.pt)",
                              metavar="PATH", required=True)
    dataset: str | None = option(None, "evaluate on this dataset instead of the training run's", registry=DATASETS,
                                 default_text="the checkpoint's")
    data_dir: Path | None = option(None, "image folders to evaluate on: DIR/val/<class>/* when DIR has train/ and "
                                   "val/, else DIR/<class>/* (all of it, or its --val-split share); the class "
                                   "folders must be the checkpoint's classes", metavar="DIR",
                                   default_text="the training run's folder")
    val_split: float | None = option(None, "evaluate only the validation share of a flat DIR/<class>/* folder, split "
                                     "as in training", low=0.0, high=1.0, low_open=True, high_open=True,
                                     metavar="FRACTION", default_text="the training run's, unless --data-dir is given")
    split: str | None = option(None, "standard datasets: evaluate on the run's validation share of the training set "
                               "(val) or on the official test set (test), the figure people compare",
                               choices=EVAL_SPLITS, default_text="val")
    on_bad_image: str | None = option(None, "an image that cannot be decoded stops the evaluation (error) or is "
                                      "left out and listed (skip)", choices=BAD_IMAGE_POLICIES,
                                      default_text="the training run's")
    output: Path | None = option(None, "write confusion_matrix.csv, classification_report.csv (with ap and roc_auc) "
                                 "and reliability.csv into DIR (created if needed)", metavar="DIR")
    batch_size: int | None = option(None, "samples per batch in each process", low=1, metavar="N",
                                    default_text="the training run's")
    num_workers: int | None = option(None, "data-loading worker processes", low=0, metavar="N",
                                     default_text="the training run's")
    device: str = option("auto", "auto picks cuda when it is available", choices=DEVICES)
    backend: str | None = option(None, "torch.distributed backend, needed with --nproc-per-node and under torchrun",
                                 choices=BACKENDS)
    nproc_per_node: int | None = option(None, "evaluate in N processes on this machine, each on its share of the "
                                        "data", low=1, metavar="N")
    plugins: tuple[str, ...] = option((), "FILE.py or package.module to import first (a dataset it registers can be "
                                      "passed to --dataset; the training run's own plugins are imported anyway)",
                                      metavar="PLUGIN", flag="--plugin")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nproc_per_node is not None and self.backend is None:
            raise ConfigError(f"--nproc-per-node {self.nproc_per_node} needs --backend gloo (CPU) or nccl (GPUs)")


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Entry point of ``scripts/evaluate.py``. Returns the exit code: 0, or 2 for anything refused."""
    preload_plugins(argv, prog)
    parser = build_parser(EvaluateConfig, prog, DESCRIPTION)
    request = parse_options(EvaluateConfig, argv, parser)  # --help and bad options exit before torch is imported
    problem = output_path_problem(request.output, folder=True) if request.output is not None else None
    if problem:  # before the model is loaded: the report would otherwise be lost to a traceback at the end
        parser.exit(2, f"{prog}: error: --output {request.output} {problem}; pass a folder you can write to: the "
                    "two CSV files are written into it\n")

    from ignite_app.cli.launch import run_processes

    try:
        return run_processes(evaluation_worker, (request, prog), request.backend, request.nproc_per_node)
    except UsageError as e:
        parser.exit(2, f"{prog}: error: {e}\n")
    return 2  # unreachable: parser.exit raises SystemExit


def evaluation_worker(local_rank: int, request: EvaluateConfig, prog: str = PROG) -> int:
    """One process of the evaluation: every process evaluates its share, rank 0 prints and writes the report."""
    import logging

    from ignite_app.cli.launch import setup_process
    from ignite_app.device import resolve_device
    from ignite_app.evaluation import evaluate_saved, evaluation_config, evaluation_data, load_saved_model
    from ignite_app.plugins import import_plugins
    from ignite_app.reporting.writers import write_report_csvs

    rank = setup_process()
    try:
        import_plugins(request.plugins)  # again: a spawned process starts with the built-in registry entries only
        saved = load_saved_model(request.checkpoint)
        config = evaluation_config(saved, request.dataset, request.data_dir, request.val_split,
                                   request.on_bad_image, request.num_workers)
        dataset, checked_out = evaluation_data(saved, config, request.split)
        skipped = list(checked_out)
        report = evaluate_saved(saved, dataset, request.batch_size or config.batch_size,
                                resolve_device(request.device), config.loader_workers, left_out=skipped)
    except (UsageError, ConfigError) as e:
        if rank == 0:
            print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if rank != 0:
        return 0
    if checked_out:  # found by --check-images; those met while evaluating were listed as they were met
        logging.getLogger("ignite_app").warning("left out %d unreadable image(s):\n  %s", len(checked_out),
                                                "\n  ".join(checked_out))
    where = f"{config.data_dir}" if config.dataset == "folder" else \
        "official test set" if request.split == "test" else "validation split"
    print(f"checkpoint {saved.path}: {len(saved.classes)} classes, input {'x'.join(map(str, saved.input_shape))}")
    print(f"data: {config.dataset} ({where}), {report.num_samples} images"
          + (f" ({len(skipped)} unreadable left out)" if skipped else ""))
    print(report.to_text())
    if request.output is not None:
        # the same two files, in the same format, as a training run's reports/ folder
        written = write_report_csvs(request.output, report)
        print(f"wrote {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
