"""Wiring: :func:`build` assembles a run without starting it, :meth:`App.run` executes it.

To add behaviour, build the app, attach your own handlers to ``app.trainer`` or ``app.evaluator``, then run::

    app = build(TrainConfig(epochs=5))

    @app.trainer.on(Events.EPOCH_COMPLETED(every=2))
    def my_handler(engine):
        ...

    app.run()
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
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
from ignite.utils import manual_seed
from torch import nn
from torch.utils.data import DataLoader

from ignite_app.config import TrainConfig
from ignite_app.data.badimages import BadImages, attach_bad_images
from ignite_app.data.loaders import build_loaders
from ignite_app.data.pipeline import ImageDataset
from ignite_app.data.spec import DataBundle, build_data
from ignite_app.device import resolve_device
from ignite_app.engines import StepOptions, create_evaluator, create_trainer
from ignite_app.errors import Interrupted, UsageError
from ignite_app.handlers import (
    BestReport,
    EpochLoss,
    EpochSummary,
    attach_best_checkpoint,
    attach_best_report,
    attach_data_order,
    attach_early_stopping,
    attach_epoch_loss,
    attach_epoch_summary,
    attach_finite_guard,
    attach_lr_scheduler,
    attach_nan_guard,
    attach_progress_bar,
    attach_validation,
)
from ignite_app.metrics import ACCURACY, write_label_map
from ignite_app.metrics.topk import has_top_k, top_k_metrics
from ignite_app.metrics.validation import validation_metrics
from ignite_app.models import Classifier, build_optimizer, param_groups
from ignite_app.plugins import Plugin, load_plugins
from ignite_app.recipe.ema import ModelEma
from ignite_app.recipe.wiring import (
    attach_ema,
    attach_raw_validation,
    build_train_recipe,
    build_training_loss,
    create_ema,
    create_raw_evaluator,
    recipe_state,
)
from ignite_app.reporting.eventfiles import purge_events_after
from ignite_app.reporting.files import History, ReportFiles, attach_history, attach_report_files
from ignite_app.reporting.recipe_logging import attach_recipe_tensorboard
from ignite_app.runstate.jobs import BackgroundJobs
from ignite_app.reporting.tbchecksum import use_fast_checksums
from ignite_app.reporting.tensorboard import (
    REPORT_LOGGING,
    ParamNormHandler,
    ReportLogger,
    attach_hparams,
    attach_norm_logging,
    attach_report_logging,
    attach_tensorboard,
    pending_report_events,
)
from ignite_app.runstate.checkpoint import RNGState, Value, attach_training_checkpoint, training_checkpoints
from ignite_app.runstate.fileio import atomic_write_text, remove_stale_temporaries
from ignite_app.runstate.fingerprint import DataFingerprint, write_file_table
from ignite_app.runstate.resume import (
    DATA_FINGERPRINT,
    ResumePoint,
    check_restartable,
    check_resumable,
    find_resume_point,
    restore,
)
from ignite_app.runstate.rundir import RunLock, RunPaths, attach_log_file, open_run_dir, run_contents
from ignite_app.runstate.signals import GracefulStop, HandlerStop, attach_graceful_stop, attach_handler_stop
from ignite_app.transfer import (
    RebuildableDDP,
    attach_backbone_unfreeze,
    build_model,
    resolve_input_options,
    wrap_model,
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
    handler_stop: HandlerStop
    # rank 0 only: the report outputs (TensorBoard and runs/<run>/reports/), and the thread that draws them
    report_jobs: BackgroundJobs | None = None
    report_logging: ReportLogger | None = None
    report_files: ReportFiles | None = None
    history: History | None = None
    hparams: Callable[[Engine], None] | None = None
    norm_logging: list[ParamNormHandler] = field(default_factory=list)
    # training recipe: the moving average of the weights (--ema-decay), and the raw weights' evaluator next to it
    ema: ModelEma | None = None
    raw_evaluator: Engine | None = None
    bad_images: BadImages | None = None  # image files: what --on-bad-image does with those met at load time


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports."""

    best_accuracy: float
    best_epoch: int
    best_checkpoint: Path
    epochs: int
    stopped_by_handler: int | None = None  # the iteration at which a handler's trainer.terminate() stopped the run
    resumable: bool = False  # (stopped by a handler) whether a checkpoint was written at that iteration
    best_metric: str = ACCURACY  # --best-metric, which chose the best epoch, and its value there
    best_value: float = math.nan


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

    def run(self, close: bool = True) -> RunResult:
        """Train up to ``config.epochs`` epochs, then log the best epoch's report.

        Args:
            close: close the app's files afterwards (TensorBoard, ``train.log``, the run folder's lock), whatever
                happens; the command line passes ``False`` to log the outcome into ``train.log`` first, then closes.

        Raises:
            Interrupted: SIGTERM or SIGINT stopped the run after a checkpoint (``exit_code`` is 143 or 130).
            StopNow: a second signal stopped the run at once.
            TrainingDiverged: the loss, the validation loss or the weights became NaN or infinite.
        """
        stop = self.handlers.graceful_stop
        stop.install()
        try:
            try:
                self.trainer.run(self.train_loader, max_epochs=self.config.epochs)
            except BaseException:
                self._write_pending_checkpoints(quiet=True)  # what was saved before the error stays on disk
                raise
            self._write_pending_checkpoints()  # a stop below says "after saving a checkpoint": it is on disk
            if stop.stopped_at is not None:
                raise Interrupted(stop.signum or 0, stop.stopped_at, self.paths.root.name)
            return self._finish()
        finally:
            stop.uninstall()
            if close:
                self.close()

    def _write_pending_checkpoints(self, quiet: bool = False) -> None:
        """Wait for the training checkpoints on the writer thread; ``quiet``: log a failed write instead of raising
        it (another error is on its way already)."""
        saver = self.handlers.training_checkpoint.save_handler
        try:
            saver.wait()  # type: ignore[union-attr]
        except Exception:
            if not quiet:
                raise
            log.exception("a training checkpoint could not be written")

    def close(self) -> None:
        """Finish the reports, close TensorBoard and ``train.log``, release the run folder (idempotent).

        Every closer runs even if one fails; the first failure is raised afterwards.
        """
        close_all(self._closers)

    def _finish(self) -> RunResult:
        best = self.handlers.best_report
        handler_stop = self.handlers.handler_stop
        if handler_stop.stopped_at is not None:
            iteration = handler_stop.stopped_at
            epoch_length = self.trainer.state.epoch_length
            log.warning("a handler stopped the run at iteration %d (epoch %d of %d)%s", iteration,
                        (iteration - 1) // epoch_length + 1, self.config.epochs,
                        " after saving a checkpoint there" if handler_stop.saved else
                        f"; no checkpoint could be written there ({handler_stop.unsaved_reason}), the last "
                        "one is " + ", ".join(p.name for p in training_checkpoints(self.paths.checkpoints)[:1]))
            if best.report is not None:
                log.info("best so far: epoch %d, val accuracy %.2f%%%s", best.epoch, 100 * best.accuracy,
                         _chosen_by(best) + top5_text(best.top5))
        elif best.report is not None:
            log.info("best epoch %d: val accuracy %.2f%%%s\n%s", best.epoch, 100 * best.accuracy,
                     _chosen_by(best) + top5_text(best.top5),
                     best.report)
        log.info("best checkpoint: %s", self.paths.best_model)
        if self.handlers.report_files is not None:
            log.info("reports: %s", self.paths.reports)
        log.info("TensorBoard: tensorboard --logdir %s", self.config.output_dir)
        return RunResult(best.accuracy, best.epoch, self.paths.best_model, self.trainer.state.epoch,
                         handler_stop.stopped_at, handler_stop.saved, best.metric, best.value)


def _chosen_by(best: BestReport) -> str:
    """How the best epoch was chosen, when not by accuracy: ", chosen by ap_macro 0.9950"."""
    return "" if best.metric == ACCURACY else f", chosen by {best.metric} {best.value:.4f}"


def top5_text(top5: float | None) -> str:
    """The best epoch's top-5 accuracy for the final report (more than 5 classes), or nothing."""
    return "" if top5 is None else f", top-5 accuracy {100 * top5:.2f}%"


def close_all(closers: list[Callable[[], None]]) -> None:
    """Call and remove every closer, last added first; each one runs even if another fails, then the first failure
    is raised."""
    error: Exception | None = None
    while closers:
        try:
            closers.pop()()
        except Exception as e:
            error = error or e
    if error is not None:
        raise error


def build(config: TrainConfig, *, model: nn.Module | None = None, data: Any = None) -> App:
    """Wire a training run from ``config``: data, model, engines and handlers. Creates (or reopens) the run folder.

    Everything that can be refused (options, data, a checkpoint to resume) is checked before the run folder is
    touched. A start that fails after that leaves a folder that the same command can use again (or, for a run
    without ``--run-name``, no folder at all). With several processes, every process calls ``build``; rank 0
    alone owns the run folder's files.

    Args:
        config: the run's options.
        model: a network to train instead of the registered ``config.model`` (it gets the app's preprocessing in
            front of it: it receives normalised float images).
        data: a ``(train, val, class_names)`` triple or a :class:`~ignite_app.data.DataBundle` instead of the
            registered ``config.dataset``.

    The run's ``config.json`` records that the network or the data came from Python: the commands that would have
    to rebuild them from the config (resume, evaluate, predict) refuse, and say so, instead of building another one.
    """
    rank, world_size = idist.get_rank(), idist.get_world_size()
    first = rank == 0
    config = dataclasses.replace(config, python_model=model is not None, python_data=data is not None)
    config = resolve_input_options(config)  # --image-size and --normalization from a pretrained network's defaults

    # 1. the checkpoint to resume from, if any; it decides the run folder
    resume, config = find_resume_point(config)
    if resume is not None:
        check_rebuildable(resume, model, data)

    # 2. device, data and loaders: each process gets its share of every epoch
    device = resolve_device(config.device)
    options = StepOptions(device, non_blocking=device.type == "cuda", amp=config.amp,
                          channels_last=config.channels_last)
    bundle = build_data(config, data)
    fingerprint = bundle.fingerprint or DataFingerprint("")
    train_loader, val_loader = build_loaders(bundle, config, rank, world_size, pin_memory=device.type == "cuda")
    epoch_length = len(train_loader)

    # 3. model, optimizer, loss: seeded so that a run is reproducible from --seed (and each rank drops differently)
    manual_seed(config.seed + rank)
    built = build_model(config, bundle, epoch_length, model, resume.iteration if resume is not None else None)
    classifier = built.classifier.to(device)
    if resume is not None:
        check_resumable(resume, config, bundle.classes, normalization(bundle, classifier), fingerprint)
    if config.channels_last:
        classifier = classifier.to(memory_format=torch.channels_last)
    model = wrap_model(classifier)  # DistributedDataParallel when there are several processes
    optimizer = idist.auto_optim(build_optimizer(config.optimizer, param_groups(classifier, config), config))
    scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
    loss_fn = build_training_loss(config, bundle, device)  # label smoothing, class weights: training only
    ema = create_ema(classifier, config)  # --ema-decay: validated and kept as the best model instead of the raw one
    evaluated = ema.module if ema is not None else unwrap(model)

    # 4. engines: step functions only; evaluation runs the bare model (DDP would sync on every forward)
    recipe = build_train_recipe(config, len(bundle.classes), rank)  # accumulation, mixing, clipping
    trainer = create_trainer(model, optimizer, loss_fn, options, scaler, recipe)
    # the validation loss stays plain cross-entropy, comparable whatever the training loss (smoothing, weights)
    metrics = {**validation_metrics(bundle.classes, nn.CrossEntropyLoss(), device, mistakes=config.log_mistakes),
               **top_k_metrics(len(bundle.classes), device)}
    evaluator = create_evaluator(evaluated, options, metrics)
    raw_evaluator = create_raw_evaluator(unwrap(model), options) if ema is not None else None

    # 5. the run folder, once everything above has been accepted; rank 0 creates it and tells the others
    closers: list[Callable[[], None]] = []
    paths = share_run_dir(config, bundle.classes, fingerprint, resume, closers)
    log_file = attach_log_file(paths)
    closers.append(lambda: _detach_log_file(log_file))
    try:
        if first:
            log_start(config, bundle, device, world_size, paths)
            for note in built.notes:
                log.info(note)

        # 6. handlers, in the order they fire at the end of an epoch
        attach_nan_guard(trainer, every=config.log_every)  # first: at an epoch's end it names the bad iteration
        epoch_loss = attach_epoch_loss(trainer, device)
        attach_data_order(trainer, train_loader.batch_sampler)
        progress_bar = attach_progress_bar(trainer) if config.progress and first else None
        if ema is not None:
            attach_ema(trainer, ema, unwrap(model))  # after each optimizer step, before a checkpoint saves it
        if world_size > 1:
            attach_buffer_sync(evaluator, evaluated)
        attach_validation(trainer, evaluator, val_loader)
        if raw_evaluator is not None:
            if world_size > 1:
                attach_buffer_sync(raw_evaluator, unwrap(model))
            attach_raw_validation(trainer, raw_evaluator, val_loader)
        attach_finite_guard(evaluator, trainer, evaluated)  # before anything keeps the model as the best
        best_report = attach_best_report(evaluator, trainer, bundle.classes, config.best_metric)
        lr_scheduler = attach_lr_scheduler(trainer, evaluator, optimizer, config, epoch_length)
        best_checkpoint = attach_best_checkpoint(
            evaluator, trainer,
            best_model_contents(evaluated, optimizer, lr_scheduler, trainer, best_report, bundle, config),
            paths.checkpoints, config.best_metric)
        early_stopping = attach_early_stopping(evaluator, trainer, config.early_stopping_patience, config.best_metric)
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
            report_logging = attach_report_logging(evaluator, trainer, tb_logger, bundle.classes, jobs,
                                                   config.pr_curves)
            report_files = attach_report_files(evaluator, trainer, best_report, paths.reports, jobs)
            # the network's parameters, named as in the network (the preprocessing has none)
            norm_logging = attach_norm_logging(trainer, tb_logger, classifier.network, config.log_weights,
                                               config.log_grads)
            hparams = attach_hparams(trainer, tb_logger, config, best_report)
            attach_recipe_tensorboard(tb_logger, trainer, evaluator, raw_evaluator, config.log_every,
                                      grad_norm=config.clip_grad_norm is not None, top5=has_top_k(len(bundle.classes)))
        bad_images = attach_bad_images(evaluator, trainer, config.on_bad_image, tb_logger and tb_logger.writer,
                                       BAD_IMAGE_FIX) if reads_image_files(bundle) else None
        summary = attach_epoch_summary(trainer, evaluator)
        attach_backbone_unfreeze(trainer, classifier, model, config.freeze_epochs, summary)  # --freeze-epochs
        # before the checkpoint that includes the epoch: a resume never finds an epoch missing from the history
        history = (attach_history(trainer, summary, paths.reports, top5=has_top_k(len(bundle.classes))) if first
                   else None)
        state = training_state(trainer, model, optimizer, lr_scheduler, early_stopping, best_checkpoint,
                               best_report, epoch_loss, scaler, bundle, config, fingerprint)
        state[REPORT_LOGGING] = report_logging if report_logging is not None else Value(lambda: None)
        state.update(recipe_state(ema))
        if bad_images is not None:
            state[BAD_IMAGES] = bad_images
        training_checkpoint = attach_training_checkpoint(trainer, state, paths.checkpoints, config.keep_last,
                                                         config.checkpoint_every)
        closers.append(training_checkpoint.save_handler.close)  # type: ignore[union-attr]  # before the lock goes
        graceful_stop = attach_graceful_stop(trainer, training_checkpoint)
        handler_stop = attach_handler_stop(trainer, training_checkpoint, graceful_stop,
                                           finished=lambda: early_stopping is not None and early_stopping.counter
                                           >= early_stopping.patience)

        # 7. put the resumed state back
        if resume is not None:
            restore({k: v for k, v in state.items() if k != RNG}, resume)
            # The RNG is restored last, just before the first step: building consumed random numbers.
            trainer.add_event_handler(Events.STARTED, lambda _: state[RNG].load_state_dict(resume.checkpoint[RNG]))

        handlers = Handlers(
            epoch_loss=epoch_loss, best_report=best_report, best_checkpoint=best_checkpoint,
            early_stopping=early_stopping, tb_logger=tb_logger, progress_bar=progress_bar, summary=summary,
            training_checkpoint=training_checkpoint, graceful_stop=graceful_stop, handler_stop=handler_stop,
            report_jobs=jobs, report_logging=report_logging, report_files=report_files, history=history,
            hparams=hparams, norm_logging=norm_logging, ema=ema, raw_evaluator=raw_evaluator, bad_images=bad_images)
        app = App(config=config, paths=paths, device=device, data=bundle, model=model, optimizer=optimizer,
                  lr_scheduler=lr_scheduler, loss_fn=loss_fn, trainer=trainer, evaluator=evaluator,
                  train_loader=train_loader, val_loader=val_loader, handlers=handlers, _closers=closers)

        # 8. the user's own handlers (--handler), attached last: after every built-in handler of the same event
        for plugin in load_plugins(config.handlers):
            attach_plugin(plugin, app)
    except BaseException as e:
        abandon_start(paths, config, resume, log_file, closers, e)
        raise
    return app


BAD_IMAGES = "bad_images"
BAD_IMAGE_FIX = ("the run stopped before training on it and its last checkpoint is intact: continue it without the "
                 "file with --on-bad-image skip (the command is below; the sample is then replaced by another one), "
                 "or replace or delete the file and start a new run (a resume refuses data that changed)")


def reads_image_files(data: DataBundle) -> bool:
    """Whether the loaders decode image files, and so may meet unreadable ones."""
    return isinstance(data.train, ImageDataset) or isinstance(data.val, ImageDataset)


def attach_plugin(plugin: Plugin, app: App) -> None:
    """Call a ``--handler`` function with the app; its failure is a usage error that names it and where it failed."""
    try:
        plugin(app)
    except Exception as e:
        raise UsageError(f"--handler {plugin.spec!r} failed while attaching its handlers{plugin.where(e)}: "
                         f"{type(e).__name__}: {e}") from e


def abandon_start(paths: RunPaths, config: TrainConfig, resume: ResumePoint | None, log_file: logging.Handler,
                  closers: list[Callable[[], None]], error: BaseException) -> None:
    """After a failure between the run folder's creation and the start of training: record the error in
    ``train.log``, close what was opened, and leave a folder the same command can use again.

    A run named with ``--run-name`` keeps its folder (its ``train.log`` says what happened; nothing in it blocks a
    retry, see :func:`ignite_app.runstate.resume.check_restartable`); a new run without one is removed, since the same
    command would start another folder anyway.
    """
    # Into train.log only: the command line prints the error itself (a traceback, too, unless it is a usage error).
    cause = error.__cause__ if isinstance(error, UsageError) and error.__cause__ is not None else error
    log_file.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "the run could not start: %s", (error,),
                                   (type(cause), cause, cause.__traceback__)))
    try:
        close_all(closers)
    except Exception:  # the original error matters more than a failure to close
        log.exception("while closing the run after that error")
    contents = run_contents(paths)
    fresh = resume is None and config.run_name is None and not contents.results and not contents.foreign
    if idist.get_rank() == 0 and fresh:
        shutil.rmtree(paths.root, ignore_errors=True)


def check_rebuildable(resume: ResumePoint, model: nn.Module | None, data: Any) -> None:
    """Refuse to resume a run whose network or data came from Python without them: nothing could rebuild them."""
    saved = resume.config
    for given, from_python, what, arg in ((model, saved.python_model, "network", "model"),
                                          (data, saved.python_data, "data", "data")):
        if from_python and given is None:
            raise UsageError(f"run {resume.run_dir.name!r} was trained on a {what} given from Python "
                             f"(build(config, {arg}=...)), which its config.json cannot rebuild; resume it from "
                             f"Python: build(config, {arg}=...) with the same {what} and resume='auto'")


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, RebuildableDDP)) else model


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


def share_run_dir(config: TrainConfig, classes: tuple[str, ...], fingerprint: DataFingerprint,
                  resume: ResumePoint | None, closers: list[Callable[[], None]]) -> RunPaths:
    """Rank 0 creates (or reopens), locks and prepares the run folder; every rank gets its path."""
    root, error = "", ""
    if idist.get_rank() == 0:
        try:
            paths = open_run_dir(config.output_dir, config.run_name, existing_ok=config.resume is not None,
                                 check_existing=lambda p: check_restartable(
                                     p, config, f"--run-name {config.run_name!r}: the run folder {p.root} already exists",
                                     "choose another --run-name, or continue the run with --resume auto"))
            closers.append(RunLock(paths).release)
            use_fast_checksums()  # before the event files are read (a resume's purge) or written
            prepare_run_dir(paths, config, classes, fingerprint, resume)
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
    if data.stats_images is not None:
        log.info("normalisation: mean %s, std %s, from a seeded sample of %d training images",
                 _rounded(data.mean), _rounded(data.std), data.stats_images)
    if data.skipped:
        log.warning("left out %d unreadable image%s (--on-bad-image skip):\n  %s", len(data.skipped),
                    "" if len(data.skipped) == 1 else "s", "\n  ".join(data.skipped))


def _rounded(values: Any) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def prepare_run_dir(paths: RunPaths, config: TrainConfig, classes: tuple[str, ...], fingerprint: DataFingerprint,
                    resume: ResumePoint | None) -> None:
    """Write the config, the label map and the data's file table; on a resume, drop the TensorBoard points written
    after the checkpoint."""
    remove_stale_temporaries(paths.root)
    for folder in (paths.checkpoints, paths.reports):
        if folder.is_dir():
            remove_stale_temporaries(folder)
    # -inf: a run that restarts in its folder (--resume auto, no checkpoint yet) drops all earlier points
    purge_events_after(paths.root, resume.saved_at if resume is not None else -math.inf,
                       also=pending_report_events(resume.checkpoint) if resume is not None else None)
    atomic_write_text(paths.config, json.dumps(config.to_dict(), indent=2) + "\n")
    write_label_map(paths.label_map, classes)
    write_file_table(paths.data_files, fingerprint)


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
        "best_acc": Value(lambda: float(best.accuracy)),  # the accuracy of the best model, whatever chose it
        "best_metric": Value(lambda: {"name": best.metric, "value": float(best.value)}),
        "epoch": Value(lambda: int(trainer.state.epoch)),
        **model_description(data, config, unwrap(model)),
    }


def model_description(data: DataBundle, config: TrainConfig, model: Classifier) -> dict[str, Value]:
    """What every checkpoint holds besides the weights so that evaluate.py can rebuild the model and feed it data
    prepared as in training; a resume checks its data against ``classes`` and ``normalization``.

    ``normalization`` describes the model's preprocessing (:meth:`Preprocess.description`): the per-channel mean
    and std (the training set's, or the pretrained configuration's), and any channel repeat and resize.
    """
    description = {
        "classes": Value(lambda: list(data.classes)),
        "config": Value(config.to_dict),
        "normalization": Value(lambda: normalization(data, model)),
        "input_shape": Value(lambda: list(data.input_shape)),
    }
    if data.crop_fraction is not None:  # image files: evaluation and prediction rebuild the validation view
        description["crop_fraction"] = Value(lambda: data.crop_fraction)
    return description


def normalization(data: DataBundle, model: Classifier) -> dict[str, Any]:
    """The checkpoints' ``normalization`` entry: the model's preprocessing (:meth:`Preprocess.description`), and how
    many training images the mean and std were computed from (``images``: None when the dataset or the pretrained
    configuration gave them)."""
    return {**model.preprocess.description(), "images": data.stats_images}


RNG = "rng"


def training_state(trainer: Engine, model: nn.Module, optimizer: torch.optim.Optimizer, lr_scheduler: Any,
                   early_stopping: EarlyStopping | None, best_checkpoint: Checkpoint, best_report: BestReport,
                   epoch_loss: EpochLoss, scaler: torch.amp.GradScaler | None, data: DataBundle,
                   config: TrainConfig, fingerprint: DataFingerprint) -> dict[str, Any]:
    """What a training checkpoint holds: every object whose state the rest of the run depends on."""
    state: dict[str, Any] = {
        "trainer": trainer,
        "model": model,
        "optimizer": optimizer,
        "best_checkpoint": best_checkpoint,
        "best_report": best_report,
        "epoch_loss": epoch_loss,
        RNG: RNGState(),
        **model_description(data, config, unwrap(model)),
        "saved_at": Value(time.time),  # TensorBoard points stamped later are dropped on resume
        "world_size": Value(idist.get_world_size),
        DATA_FINGERPRINT: Value(fingerprint.to_dict),
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
