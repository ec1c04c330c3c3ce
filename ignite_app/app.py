"""Wiring: :func:`build` assembles a run without starting it, :meth:`App.run` executes it.

To add behaviour, build the app, attach your own handlers to ``app.trainer`` or ``app.evaluator``, then run::

    app = build(TrainConfig(epochs=5))

    @app.trainer.on(Events.EPOCH_COMPLETED(every=2))
    def my_handler(engine):
        ...

    app.run()
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, EarlyStopping, ProgressBar
from ignite.handlers.tensorboard_logger import TensorboardLogger
from ignite.metrics import Loss
from ignite.utils import manual_seed
from torch import nn
from torch.utils.data import DataLoader

from ignite_app.checkpoint import RNGState, Value, attach_training_checkpoint
from ignite_app.config import TrainConfig
from ignite_app.data import DataBundle, build_data, build_loaders
from ignite_app.engines import StepOptions, create_evaluator, create_trainer
from ignite_app.errors import Interrupted, UsageError
from ignite_app.eventfiles import purge_events_after
from ignite_app.fileio import atomic_write_text, remove_stale_temporaries
from ignite_app.handlers import (
    VAL_LOSS,
    BestReport,
    EpochLoss,
    EpochSummary,
    attach_best_checkpoint,
    attach_best_report,
    attach_data_order,
    attach_early_stopping,
    attach_epoch_loss,
    attach_epoch_summary,
    attach_lr_scheduler,
    attach_nan_guard,
    attach_progress_bar,
    attach_tensorboard,
    attach_validation,
)
from ignite_app.metrics import REPORT, ConfusionMatrixMetric, write_label_map
from ignite_app.models import build_model, build_optimizer
from ignite_app.plugins import load_plugins
from ignite_app.report_files import History, ReportFiles, attach_history, attach_report_files
from ignite_app.resume import ResumePoint, check_resumable, find_resume_point, restore
from ignite_app.rundir import RunLock, RunPaths, attach_log_file, open_run_dir
from ignite_app.signals import GracefulStop, attach_graceful_stop
from ignite_app.tb_reports import (
    REPORT_LOGGING,
    BackgroundJobs,
    ParamNormHandler,
    ReportLogger,
    attach_hparams,
    attach_norm_logging,
    attach_report_logging,
    pending_report_events,
)

log = logging.getLogger("ignite_app")


@dataclass
class Handlers:
    """The handlers :func:`build` attached, for users who want to inspect or reconfigure them."""

    epoch_loss: EpochLoss
    best_report: BestReport
    best_checkpoint: Checkpoint
    early_stopping: EarlyStopping | None
    tb_logger: TensorboardLogger | None  # rank 0 only
    progress_bar: ProgressBar | None
    summary: EpochSummary
    training_checkpoint: Checkpoint
    graceful_stop: GracefulStop
    # rank 0 only: the report outputs (TensorBoard and runs/<run>/reports/), and the thread that draws them
    report_jobs: BackgroundJobs | None = None
    report_logging: ReportLogger | None = None
    report_files: ReportFiles | None = None
    history: History | None = None
    hparams: Callable[[Engine], None] | None = None
    norm_logging: list[ParamNormHandler] = field(default_factory=list)


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports."""

    best_accuracy: float
    best_epoch: int
    best_checkpoint: Path
    epochs: int


@dataclass
class App:
    """A wired training run: engines, model, data and handlers. Nothing runs until :meth:`run`."""

    config: TrainConfig
    paths: RunPaths
    device: torch.device
    data: DataBundle
    model: nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    loss_fn: nn.Module
    trainer: Engine
    evaluator: Engine
    train_loader: DataLoader
    val_loader: DataLoader
    handlers: Handlers
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes

    def run(self) -> RunResult:
        """Train up to ``config.epochs`` epochs, then log the best epoch's report. Closes the app's files.

        Raises:
            Interrupted: SIGTERM or SIGINT stopped the run after a checkpoint (``exit_code`` is 143 or 130).
            TrainingDiverged: the loss became NaN or infinite.
        """
        stop = self.handlers.graceful_stop
        stop.install()
        try:
            self.trainer.run(self.train_loader, max_epochs=self.config.epochs)
            if stop.stopped_at is not None:
                raise Interrupted(stop.signum or 0, stop.stopped_at, self.paths.root.name)
            return self._finish()
        finally:
            stop.uninstall()
            self.close()

    def close(self) -> None:
        """Finish the reports, close TensorBoard and ``train.log``, release the run folder (idempotent).

        Every closer runs even if one fails; the first failure is raised afterwards.
        """
        error: Exception | None = None
        while self._closers:
            try:
                self._closers.pop()()
            except Exception as e:
                error = error or e
        if error is not None:
            raise error

    def _finish(self) -> RunResult:
        best = self.handlers.best_report
        if best.report is not None:
            log.info("best epoch %d: val accuracy %.2f%%\n%s", best.epoch, 100 * best.accuracy, best.report)
        log.info("best checkpoint: %s", self.paths.best_model)
        if self.handlers.report_files is not None:
            log.info("reports: %s", self.paths.reports)
        log.info("TensorBoard: tensorboard --logdir %s", self.config.output_dir)
        return RunResult(best.accuracy, best.epoch, self.paths.best_model, self.trainer.state.epoch)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a usage error.

    With several processes on a GPU machine each one takes the GPU of its local rank.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or --device auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and idist.get_world_size() > 1:
        torch.cuda.set_device(idist.get_local_rank())
        return torch.device("cuda", idist.get_local_rank())
    return torch.device(name)


def build(config: TrainConfig) -> App:
    """Wire a training run from ``config``: data, model, engines and handlers. Creates (or reopens) the run folder.

    Everything that can be refused (options, data, a checkpoint to resume) is checked before the run folder is
    touched. With several processes, every process calls ``build``; rank 0 alone owns the run folder's files.
    """
    rank, world_size = idist.get_rank(), idist.get_world_size()
    first = rank == 0

    # 1. the checkpoint to resume from, if any; it decides the run folder
    resume, config = find_resume_point(config)

    # 2. device, data and loaders: each process gets its share of every epoch
    device = resolve_device(config.device)
    options = StepOptions(device, non_blocking=device.type == "cuda", amp=config.amp,
                          channels_last=config.channels_last)
    data = build_data(config)
    train_loader, val_loader = build_loaders(data, config, rank, world_size, pin_memory=device.type == "cuda")
    epoch_length = len(train_loader)
    if resume is not None:
        check_resumable(resume, config, data.classes, normalization(data))

    # 3. model, optimizer, loss: seeded so that a run is reproducible from --seed (and each rank drops differently)
    manual_seed(config.seed + rank)
    model = build_model(config.model, len(data.classes), data.input_shape).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = idist.auto_model(model)  # DistributedDataParallel when there are several processes
    optimizer = idist.auto_optim(build_optimizer(config.optimizer, model, config.lr, config.momentum,
                                                 config.weight_decay))
    scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
    loss_fn = nn.CrossEntropyLoss()

    # 4. engines: step functions only; evaluation runs the bare model (DDP would sync on every forward)
    trainer = create_trainer(model, optimizer, loss_fn, options, scaler)
    metrics = {REPORT: ConfusionMatrixMetric(data.classes, device=device), VAL_LOSS: Loss(loss_fn, device=device)}
    evaluator = create_evaluator(unwrap(model), options, metrics)

    # 5. the run folder, once everything above has been accepted; rank 0 creates it and tells the others
    closers: list[Callable[[], None]] = []
    paths = share_run_dir(config, data.classes, resume, closers)
    log_file = attach_log_file(paths)
    closers.append(lambda: _detach_log_file(log_file))
    if first:
        log_start(config, data, device, world_size, paths)

    # 6. handlers, in the order they fire at the end of an epoch
    epoch_loss = attach_epoch_loss(trainer, device)
    attach_data_order(trainer, train_loader.batch_sampler)
    attach_nan_guard(trainer, every=config.log_every)
    progress_bar = attach_progress_bar(trainer) if config.progress and first else None
    if world_size > 1:
        attach_buffer_sync(evaluator, unwrap(model))
    attach_validation(trainer, evaluator, val_loader)
    best_report = attach_best_report(evaluator, trainer, data.classes)
    lr_scheduler = attach_lr_scheduler(trainer, evaluator, optimizer, config, epoch_length)
    best_checkpoint = attach_best_checkpoint(
        evaluator, trainer, best_model_contents(model, optimizer, lr_scheduler, trainer, best_report, data, config),
        paths.checkpoints)
    early_stopping = attach_early_stopping(evaluator, trainer, config.early_stopping_patience)
    tb_logger = attach_tensorboard(trainer, evaluator, paths.root, config.log_every) if first else None
    jobs: BackgroundJobs | None = None
    report_logging: ReportLogger | None = None
    report_files: ReportFiles | None = None
    hparams: Callable[[Engine], None] | None = None
    norm_logging: list[ParamNormHandler] = []
    if tb_logger is not None:  # rank 0 writes the reports; one thread draws them, off the training loop
        closers.append(tb_logger.close)
        jobs = BackgroundJobs()
        closers.append(jobs.close)  # runs before tb_logger.close: the last reports reach the event file
        report_logging = attach_report_logging(evaluator, trainer, tb_logger, data.classes, jobs)
        report_files = attach_report_files(evaluator, trainer, best_report, paths.reports, jobs)
        norm_logging = attach_norm_logging(trainer, tb_logger, unwrap(model), config.log_weights, config.log_grads)
        hparams = attach_hparams(trainer, tb_logger, config, best_report)
    summary = attach_epoch_summary(trainer, evaluator)
    # before the checkpoint that includes the epoch: a resume never finds an epoch missing from the history
    history = attach_history(trainer, summary, paths.reports) if first else None
    state = training_state(trainer, model, optimizer, lr_scheduler, early_stopping, best_checkpoint, best_report,
                           epoch_loss, scaler, data, config)
    state[REPORT_LOGGING] = report_logging if report_logging is not None else Value(lambda: None)
    training_checkpoint = attach_training_checkpoint(trainer, state, paths.checkpoints, config.keep_last,
                                                     config.checkpoint_every)
    graceful_stop = attach_graceful_stop(trainer, training_checkpoint)

    # 7. put the resumed state back
    if resume is not None:
        # Checkpoints of versions without report logging resume too; they just have nothing to replay.
        restore({k: v for k, v in state.items() if k != RNG and (k != REPORT_LOGGING or k in resume.checkpoint)},
                resume)
        # The RNG is restored last, just before the first step: building consumed random numbers.
        trainer.add_event_handler(Events.STARTED, lambda _: state[RNG].load_state_dict(resume.checkpoint[RNG]))

    handlers = Handlers(epoch_loss, best_report, best_checkpoint, early_stopping, tb_logger, progress_bar, summary,
                        training_checkpoint, graceful_stop, jobs, report_logging, report_files, history, hparams,
                        norm_logging)
    app = App(config, paths, device, data, model, optimizer, lr_scheduler, loss_fn, trainer, evaluator,
              train_loader, val_loader, handlers, closers)

    # 8. the user's own handlers (--handler), attached last: after every built-in handler of the same event
    for plugin in load_plugins(config.handlers):
        plugin(app)
    return app


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def attach_buffer_sync(evaluator: Engine, model: nn.Module) -> Callable[[Engine], None]:
    """Before each validation, give every rank rank 0's buffers (batch-norm statistics).

    DDP keeps the parameters equal across ranks, but each rank's last training forward updates its own running
    statistics; without this, each rank would evaluate a slightly different model.
    """

    def sync(engine: Engine) -> None:
        for buffer in model.buffers():
            buffer.copy_(idist.broadcast(buffer, src=0))

    evaluator.add_event_handler(Events.STARTED, sync)
    return sync


def share_run_dir(config: TrainConfig, classes: tuple[str, ...], resume: ResumePoint | None,
                  closers: list[Callable[[], None]]) -> RunPaths:
    """Rank 0 creates (or reopens), locks and prepares the run folder; every rank gets its path."""
    root, error = "", ""
    if idist.get_rank() == 0:
        try:
            paths = open_run_dir(config.output_dir, config.run_name, existing_ok=config.resume is not None)
            closers.append(RunLock(paths).release)
            prepare_run_dir(paths, config, classes, resume)
            root = str(paths.root)
        except UsageError as e:
            error = str(e)
    if idist.get_world_size() > 1:
        # One broadcast carries either the folder or rank 0's refusal, so no rank waits for a folder that never comes.
        root, error = idist.broadcast(root, src=0), idist.broadcast(error, src=0)
    if error:
        raise UsageError(error)
    return RunPaths(Path(root))


def log_start(config: TrainConfig, data: DataBundle, device: torch.device, world_size: int,
              paths: RunPaths) -> None:
    """What the run is about to do, in one place at the top of the log."""
    log.info("data: %s, %d training and %d validation images, %d classes, input %s",
             config.dataset, len(data.train), len(data.val), len(data.classes), "x".join(map(str, data.input_shape)))
    log.info("batch size: %d per process x %d process%s = %d per step; device %s", config.batch_size, world_size,
             "" if world_size == 1 else "es", config.batch_size * world_size, device)
    log.info("run folder: %s", paths.root)
    if data.skipped:
        log.warning("left out %d unreadable image%s (--on-bad-image skip):\n  %s", len(data.skipped),
                    "" if len(data.skipped) == 1 else "s", "\n  ".join(data.skipped))


def prepare_run_dir(paths: RunPaths, config: TrainConfig, classes: tuple[str, ...],
                    resume: ResumePoint | None) -> None:
    """Write the config and label map; on a resume, drop the TensorBoard points written after the checkpoint."""
    remove_stale_temporaries(paths.root)
    for folder in (paths.checkpoints, paths.reports):
        if folder.is_dir():
            remove_stale_temporaries(folder)
    # -inf: a run that restarts in its folder (--resume auto, no checkpoint yet) drops all earlier points
    purge_events_after(paths.root, resume.saved_at if resume is not None else -math.inf,
                       also=pending_report_events(resume.checkpoint) if resume is not None else None)
    atomic_write_text(paths.config, json.dumps(config.to_dict(), indent=2) + "\n")
    write_label_map(paths.label_map, classes)


def _detach_log_file(handler: logging.Handler) -> None:
    log.removeHandler(handler)
    handler.close()


def best_model_contents(model: nn.Module, optimizer: torch.optim.Optimizer, lr_scheduler: Any, trainer: Engine,
                        best: BestReport, data: DataBundle, config: TrainConfig) -> dict[str, Any]:
    """What ``best_model.pt`` holds: the tutorial's keys plus what evaluation needs to rebuild the model."""
    return {
        "state_dict": model,
        "optimizer": optimizer,
        "lr_scheduler": lr_scheduler if lr_scheduler is not None else Value(lambda: None),
        "best_acc": Value(lambda: float(best.accuracy)),
        "epoch": Value(lambda: int(trainer.state.epoch)),
        **model_description(data, config),
    }


def model_description(data: DataBundle, config: TrainConfig) -> dict[str, Value]:
    """What every checkpoint holds besides the weights so that evaluate.py can rebuild the model and feed it data
    prepared as in training; a resume checks its data against ``classes`` and ``normalization``."""
    return {
        "classes": Value(lambda: list(data.classes)),
        "config": Value(config.to_dict),
        "normalization": Value(lambda: normalization(data)),
        "input_shape": Value(lambda: list(data.input_shape)),
    }


def normalization(data: DataBundle) -> dict[str, list[float]]:
    """The checkpoints' ``normalization`` entry: the training set's per-channel mean and std."""
    return {"mean": list(data.mean), "std": list(data.std)}


RNG = "rng"


def training_state(trainer: Engine, model: nn.Module, optimizer: torch.optim.Optimizer, lr_scheduler: Any,
                   early_stopping: EarlyStopping | None, best_checkpoint: Checkpoint, best_report: BestReport,
                   epoch_loss: EpochLoss, scaler: torch.amp.GradScaler | None, data: DataBundle,
                   config: TrainConfig) -> dict[str, Any]:
    """What a training checkpoint holds: every object whose state the rest of the run depends on."""
    state: dict[str, Any] = {
        "trainer": trainer,
        "model": model,
        "optimizer": optimizer,
        "best_checkpoint": best_checkpoint,
        "best_report": best_report,
        "epoch_loss": epoch_loss,
        RNG: RNGState(),
        **model_description(data, config),
        "saved_at": Value(time.time),  # TensorBoard points stamped later are dropped on resume
        "world_size": Value(idist.get_world_size),
    }
    if scaler is not None:
        state["scaler"] = scaler
    if lr_scheduler is not None:
        state["lr_scheduler"] = lr_scheduler
    if early_stopping is not None:
        state["early_stopping"] = early_stopping
    return state


def run(config: TrainConfig) -> RunResult:
    """Build and run a training run."""
    return build(config).run()
