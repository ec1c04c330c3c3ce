"""Handlers that keep ``runs/<run>/reports/`` up to date: the best epoch's report files and ``history.csv``.

Both follow the training checkpoint on a resume: when the trainer starts, the files are rewritten from the
restored state, so a folder that a killed process left ahead of its last checkpoint is made consistent again.
"""

from __future__ import annotations

from pathlib import Path

from ignite.engine import Engine, Events

from ignite_app.handlers import BestReport, EpochSummary
from ignite_app.metrics import REPORT, ClassificationReport
from ignite_app.reporting.heatmap import heatmap_png
from ignite_app.runstate.jobs import BackgroundJobs
from ignite_app.reporting.writers import (
    HISTORY_CSV,
    heatmap_title,
    history_columns,
    history_row,
    read_history,
    remove_report_files,
    write_history,
    write_report_files,
)


def write_best_files(folder: Path, report: ClassificationReport, epoch: int) -> None:
    """Write the report files of the best epoch; the PNG is the heatmap TensorBoard shows for that epoch."""
    write_report_files(folder, report, heatmap_png(report.counts, report.class_names,
                                                   title=heatmap_title(epoch, report)))


class ReportFiles:
    """Write ``confusion_matrix.csv``, ``classification_report.csv`` and ``confusion_matrix.png`` of the best epoch.

    They are written by ``jobs`` (off the training loop, like the TensorBoard report) whenever the best changes,
    and again when a resumed run starts, from the :class:`BestReport` its checkpoint restored.
    """

    def __init__(self, folder: Path, best: BestReport, jobs: BackgroundJobs) -> None:
        self.folder, self.best, self.jobs = folder, best, jobs

    def __call__(self, evaluator: Engine) -> None:
        if self.best.report is not None and self.best.report is evaluator.state.metrics[REPORT]:  # a new best
            self.write()

    def write(self) -> None:
        """Write the files of the current best report, or remove them when there is none yet."""
        if self.best.report is None:
            remove_report_files(self.folder)
        else:
            self.jobs.submit(f"writing the report files of epoch {self.best.epoch}", write_best_files, self.folder,
                             self.best.report, self.best.epoch)


def attach_report_files(evaluator: Engine, trainer: Engine, best: BestReport, folder: Path,
                        jobs: BackgroundJobs) -> ReportFiles:
    """Keep ``folder`` holding the best epoch's report files; attach after :func:`attach_best_report`."""
    files = ReportFiles(folder, best, jobs)
    evaluator.add_event_handler(Events.COMPLETED, files)
    trainer.add_event_handler(Events.STARTED, lambda _: files.write())
    return files


class History:
    """``history.csv``: one row per completed epoch, from the :class:`EpochSummary` records.

    The whole file is rewritten (atomically) after every epoch rather than appended to, so a reader never sees half
    a row. When the trainer starts, rows of epochs after the restored checkpoint (written by an interrupted process)
    are dropped, so a resumed run continues the file without repeating an epoch.
    """

    def __init__(self, path: Path, summary: EpochSummary, top5: bool = False) -> None:
        self.path, self.summary = path, summary
        self.columns = history_columns(top5)
        self.rows: list[list[str]] = []

    def start(self, engine: Engine) -> None:
        completed = engine.state.iteration // engine.state.epoch_length  # after a resume: the checkpoint's epochs
        self.rows = read_history(self.path, completed, self.columns)
        write_history(self.path, self.rows, self.columns)

    def __call__(self, engine: Engine) -> None:
        self.rows.append(history_row(self.summary.records[-1], self.columns))
        write_history(self.path, self.rows, self.columns)


def attach_history(trainer: Engine, summary: EpochSummary, folder: Path, top5: bool = False) -> History:
    """Write ``folder/history.csv`` (with a ``top5_accuracy`` column when ``top5``); attach after
    :func:`attach_epoch_summary` and before the training checkpoint."""
    history = History(folder / HISTORY_CSV, summary, top5)
    trainer.add_event_handler(Events.STARTED, history.start)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, history)
    return history
