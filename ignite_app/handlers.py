"""Event handlers of the app. Each ``attach_*`` helper picks its event, attaches the handler and returns it.

The order in which :func:`ignite_app.app.build` calls them is the order in which they fire on
``Events.EPOCH_COMPLETED`` of the trainer: epoch loss, validation (best checkpoint, early stopping and TensorBoard
fire inside it, on the evaluator), learning-rate record and step, TensorBoard epoch scalars, summary line.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import (
    Checkpoint,
    EarlyStopping,
    ProgressBar,
    global_step_from_engine,
)
from ignite.handlers.checkpoint import CheckpointEvents
from ignite.handlers.param_scheduler import (
    CosineAnnealingScheduler,
    create_lr_scheduler_with_warmup,
)
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader

from ignite_app.config import TrainConfig
from ignite_app.data.samplers import EpochBatchSampler
from ignite_app.errors import TrainingDiverged
from ignite_app.events import AppEvents, BestModel
from ignite_app.metrics import (
    ACCURACY,
    AP_MACRO,
    ECE,
    F1_MACRO,
    PRECISION_MACRO,
    RECALL_MACRO,
    REPORT,
    ROC_AUC_MACRO,
    VAL_LOSS,
    ClassificationReport,
    ScoreReport,
)
from ignite_app.metrics.topk import TOP5_ACCURACY
from ignite_app.models.finetune import apply_lr_scales
from ignite_app.recipe.accumulation import StepGroups
from ignite_app.runstate.checkpoint import DurableSaver
from ignite_app.runstate.rundir import BEST_MODEL

log = logging.getLogger("ignite_app")

# trainer.state.metrics keys (epoch-level values of the training engine)
EPOCH_LOSS = "epoch_loss"
LR = "lr"  # the head's learning rate (the first parameter group's)
LR_BACKBONE = "lr/backbone"  # the backbone's (--backbone-lr-scale x the head's)
VAL_SCALARS = (VAL_LOSS, ACCURACY, PRECISION_MACRO, RECALL_MACRO, F1_MACRO)
SCORE_SCALARS = (AP_MACRO, ROC_AUC_MACRO, ECE)  # from the probabilities (ScoreMetric), written beside VAL_SCALARS
# TensorBoard tags: ignite's OutputHandler writes "<tag>/<name>"
TRAIN_TAG, VAL_TAG = "train", "val"


def attach_data_order(trainer: Engine, batch_sampler: EpochBatchSampler) -> Callable[[Engine], None]:
    """Give each epoch its own shuffled order; after a mid-epoch resume, skip the batches already trained on."""

    def set_epoch(engine: Engine) -> None:
        done_in_epoch = engine.state.iteration - (engine.state.epoch - 1) * engine.state.epoch_length
        batch_sampler.set_epoch(engine.state.epoch, start=done_in_epoch)

    # EPOCH_STARTED fires before the trainer creates the epoch's data iterator.
    trainer.add_event_handler(Events.EPOCH_STARTED, set_epoch)
    return set_epoch


class EpochLoss:
    """Sample-weighted mean training loss of each epoch, into ``trainer.state.metrics["epoch_loss"]``.

    Unlike the tutorial's ``epoch_loss / i`` it divides by the number of samples seen, sums over processes, and
    survives a mid-epoch resume: the partial sums are part of the training checkpoint (:meth:`state_dict`).
    The sum stays on the device so that no iteration waits for the GPU.
    """

    def __init__(self, device: torch.device) -> None:
        self._sum = torch.zeros((), dtype=torch.float64, device=device)
        self._count = 0

    def reset(self, engine: Engine) -> None:
        if engine.state.iteration % engine.state.epoch_length == 0:  # not when resuming inside the epoch
            self._sum.zero_()
            self._count = 0

    def update(self, engine: Engine) -> None:
        out = engine.state.output
        self._sum += out["loss"].double() * out["batch_size"]
        self._count += out["batch_size"]

    def complete(self, engine: Engine) -> None:
        total, count = self._reduced()
        value = total / max(count, 1)
        if not math.isfinite(value):
            raise TrainingDiverged(f"the mean training loss of epoch {engine.state.epoch} is {value}; "
                                   "lower --lr or check the data for NaN or infinite values")
        engine.state.metrics[EPOCH_LOSS] = value

    def _reduced(self) -> tuple[float, int]:
        total = idist.all_reduce(self._sum.clone())
        count = int(idist.all_reduce(self._count))
        return float(total), count

    def state_dict(self) -> dict[str, Any]:
        """The partial sums over all processes (a collective call: every rank must make it)."""
        total, count = self._reduced()
        return {"sum": total, "count": count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # The saved sums are global: rank 0 carries them, the other ranks restart from zero.
        first = idist.get_rank() == 0
        self._sum.fill_(float(state["sum"]) if first else 0.0)
        self._count = int(state["count"]) if first else 0


def attach_epoch_loss(trainer: Engine, device: torch.device) -> EpochLoss:
    """Track the epoch's mean training loss; attach it first so that later epoch handlers can read it."""
    tracker = EpochLoss(device)
    trainer.add_event_handler(Events.EPOCH_STARTED, tracker.reset)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, tracker.update)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, tracker.complete)
    return tracker


class NanGuard:
    """Stop with :class:`TrainingDiverged` when the training loss is NaN or infinite.

    ignite's ``TerminateOnNan`` ends the run as if it had completed; a diverged run must fail loudly instead.
    Reading the loss on every iteration would make each step wait for the GPU, so it is only read every ``every``
    iterations and at the end of each epoch; in between, the first non-finite iteration is recorded on the device
    (no wait), so the message still says where the loss went bad. With several processes the check is reduced, so
    that every process stops at the same point.
    """

    _NONE = 2**62  # "no bad iteration yet": larger than any iteration, so the reduction is a MIN

    def __init__(self, every: int) -> None:
        self.every = every
        self._first_bad: Tensor | None = None

    def record(self, engine: Engine) -> None:
        loss = engine.state.output["loss"]
        if self._first_bad is None:
            self._first_bad = torch.full((), self._NONE, dtype=torch.int64, device=loss.device)
        bad = ~torch.isfinite(loss) & (self._first_bad == self._NONE)
        self._first_bad = torch.where(bad, engine.state.iteration, self._first_bad)

    def check(self, engine: Engine) -> None:
        if self._first_bad is None:
            return
        first = int(idist.all_reduce(self._first_bad.clone(), op="MIN") if idist.get_world_size() > 1
                    else self._first_bad)
        if first != self._NONE:
            raise TrainingDiverged(f"the training loss became non-finite at iteration {first} (epoch "
                                   f"{(first - 1) // engine.state.epoch_length + 1}); detected at iteration "
                                   f"{engine.state.iteration}: the loss is checked every {self.every} iterations "
                                   "(--log-every) and at the end of each epoch; lower --lr or check the data for NaN "
                                   "or infinite values")

    def reset(self, engine: Engine) -> None:  # a resumed run starts clean: its checkpoint held finite values
        self._first_bad = None


def attach_nan_guard(trainer: Engine, every: int) -> NanGuard:
    """Record the first non-finite training loss on every iteration; raise every ``every`` iterations and at the
    end of each epoch (see :class:`NanGuard`)."""
    guard = NanGuard(every)
    trainer.add_event_handler(Events.STARTED, guard.reset)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, guard.record)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=every) | Events.EPOCH_COMPLETED, guard.check)
    return guard


def attach_finite_guard(evaluator: Engine, trainer: Engine, model: nn.Module) -> Callable[[Engine], None]:
    """Stop with :class:`TrainingDiverged` when a validation loss or the weights are not finite.

    Attach right after :func:`attach_validation`, before anything that keeps the best model: NaN weights must never
    become ``best_model.pt`` (their accuracy, an arg-max of NaN, can still look like a score).
    """

    def check(engine: Engine) -> None:
        loss = float(engine.state.metrics[VAL_LOSS])
        bad = [name for name, t in (*model.named_parameters(), *model.named_buffers())
               if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if math.isfinite(loss) and not bad:
            return
        where = f"after epoch {trainer.state.epoch} (iteration {trainer.state.iteration})"
        what = (f"the weights are not finite ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''})" if bad
                else f"the validation loss is {loss}")
        raise TrainingDiverged(f"{what} {where}: the model was not saved as the best model; lower --lr or check "
                               "the data for NaN or infinite values")

    evaluator.add_event_handler(Events.COMPLETED, check)
    return check


def attach_validation(trainer: Engine, evaluator: Engine, val_loader: DataLoader) -> Callable[[Engine], None]:
    """Run the evaluator over the validation set after every training epoch, then fire
    :attr:`AppEvents.VALIDATION_COMPLETED` on the trainer with ``state.val_report`` and ``state.val_metrics``."""
    _register_app_events(trainer)

    def validate(engine: Engine) -> None:
        evaluator.run(val_loader)
        metrics = evaluator.state.metrics
        engine.state.val_report = metrics.get(REPORT)
        engine.state.val_metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        engine.fire_event(AppEvents.VALIDATION_COMPLETED)

    trainer.add_event_handler(Events.EPOCH_COMPLETED, validate)
    return validate


class PlateauStep:
    """Step ``ReduceLROnPlateau`` once per epoch with the monitored value.

    ignite's ``ReduceLROnPlateauScheduler`` reads one engine's metric and its ``state_dict`` holds a bound method
    (it cannot be loaded with ``weights_only=True``); stepping the plain torch scheduler avoids both.
    """

    def __init__(self, scheduler: ReduceLROnPlateau, read: Callable[[], float]) -> None:
        self.scheduler, self.read = scheduler, read

    def __call__(self, engine: Engine) -> None:
        self.scheduler.step(self.read())


def attach_lr_scheduler(trainer: Engine, evaluator: Engine, optimizer: torch.optim.Optimizer,
                        config: TrainConfig, epoch_length: int) -> Any:
    """Record the epoch's lr in ``trainer.state.metrics["lr"]`` (the head's; the backbone's in ``"lr/backbone"``)
    and drive the scheduler ``config`` names, keeping each parameter group's ``lr_scale`` (``--backbone-lr-scale``).

    Returns the scheduler: torch's ``ReduceLROnPlateau`` (plateau), ignite's warm-up + cosine parameter scheduler
    (cosine) or ``None``. Attach after :func:`attach_validation` so that ``val_*`` monitors are up to date. The
    cosine schedule counts optimizer steps: with ``--accumulate-steps`` it moves once per group of batches.
    """

    def record_lr(engine: Engine) -> None:  # before the plateau step: the lr this epoch trained with
        groups = optimizer.param_groups
        engine.state.metrics[LR] = groups[0]["lr"]
        engine.state.metrics[LR_BACKBONE] = next((g["lr"] for g in groups if g.get("name") == "backbone"),
                                                 groups[0]["lr"])

    trainer.add_event_handler(Events.EPOCH_COMPLETED, record_lr)
    if config.lr_scheduler == "plateau":
        monitors: dict[str, tuple[str, Callable[[], float]]] = {
            "train_loss": ("min", lambda: trainer.state.metrics[EPOCH_LOSS]),
            "val_loss": ("min", lambda: evaluator.state.metrics[VAL_LOSS]),
            "val_accuracy": ("max", lambda: evaluator.state.metrics[ACCURACY]),
        }
        mode, read = monitors[config.plateau_monitor]
        scheduler = ReduceLROnPlateau(optimizer, mode=mode, factor=config.plateau_factor,
                                      patience=config.plateau_patience)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, PlateauStep(scheduler, read))
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: apply_lr_scales(optimizer))  # eps, min_lr
        return scheduler
    if config.lr_scheduler == "cosine":
        groups = StepGroups(config.accumulate_steps)
        steps_per_epoch = groups.steps_per_epoch(epoch_length)
        total = config.epochs * steps_per_epoch
        warmup = min(round(config.warmup_epochs * steps_per_epoch), total - 1)
        # a warm-up of one step would start at lr / 1 = lr: none at all (and ignite refuses one shorter than 2)
        warmup = warmup if warmup >= 2 else 0
        cosine = CosineAnnealingScheduler(optimizer, "lr", start_value=config.lr, end_value=0.0,
                                          cycle_size=total - warmup + 1)  # one cycle: no restart at the end
        scheduler = cosine
        if warmup:
            scheduler = create_lr_scheduler_with_warmup(cosine, warmup_start_value=config.lr / warmup,
                                                        warmup_end_value=config.lr, warmup_duration=warmup)
        starts = Events.ITERATION_STARTED(event_filter=groups.starts_group) if groups.size > 1 else \
            Events.ITERATION_STARTED
        trainer.add_event_handler(starts, scheduler)
        # ignite's scheduler sets one value on every group: the backbone's groups get theirs x --backbone-lr-scale
        trainer.add_event_handler(starts, lambda _: apply_lr_scales(optimizer))
        return scheduler
    return None


class BestReport:
    """The validation report of the best epoch so far: the highest ``metric`` (``--best-metric``; the first epoch
    wins a tie), with that epoch's accuracy (the tutorial's ``best_acc``) and report (its scores included)."""

    def __init__(self, class_names: tuple[str, ...], metric: str = ACCURACY) -> None:
        self.class_names = class_names
        self.metric = metric
        self.value = -math.inf  # the best value of `metric`
        self.accuracy = -math.inf  # the accuracy of the best epoch
        self.epoch = 0
        self.report: ClassificationReport | None = None
        self.top5: float | None = None  # the best epoch's top-5 accuracy (more than 5 classes)

    def __call__(self, evaluator: Engine, trainer: Engine) -> None:
        value = evaluator.state.metrics[self.metric]
        if value > self.value:
            self.value, self.accuracy, self.epoch = value, evaluator.state.metrics[ACCURACY], trainer.state.epoch
            self.report = evaluator.state.metrics[REPORT]
            self.top5 = evaluator.state.metrics.get(TOP5_ACCURACY)

    def state_dict(self) -> dict[str, Any]:
        report = self.report
        counts = None if report is None else torch.tensor(report.counts)  # a copy: counts is read-only
        scores = None if report is None or report.scores is None else report.scores.state_dict()
        return {"accuracy": self.accuracy, "epoch": self.epoch, "counts": counts, "metric": self.metric,
                "value": self.value, "scores": scores, TOP5_ACCURACY: self.top5}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        metric = state["metric"]
        if metric != self.metric:
            raise ValueError(f"the checkpoint chose its best model by {metric}, this run by {self.metric}; "
                             f"resume with --best-metric {metric}")
        self.accuracy, self.epoch = float(state["accuracy"]), int(state["epoch"])
        self.value = float(state["value"])
        self.top5 = state[TOP5_ACCURACY]
        counts, scores = state["counts"], state["scores"]
        self.report = None if counts is None else ClassificationReport.from_counts(
            counts.numpy(), self.class_names, ScoreReport.from_state_dict(scores) if scores else None)


def attach_best_report(evaluator: Engine, trainer: Engine, class_names: tuple[str, ...],
                       metric: str = ACCURACY) -> BestReport:
    """Keep the report of the best validation epoch by ``metric`` (printed at the end of the run, written by the
    reports)."""
    best = BestReport(class_names, metric)
    evaluator.add_event_handler(Events.COMPLETED, best, trainer)
    return best


def attach_best_checkpoint(evaluator: Engine, trainer: Engine, to_save: Mapping[str, Any],
                           out_dir: Path, metric: str = ACCURACY) -> Checkpoint:
    """Write ``out_dir/best_model.pt`` whenever the validation ``metric`` (``--best-metric``: accuracy, f1_macro
    or ap_macro) beats the best so far.

    ignite's ``Checkpoint`` keeps the bookkeeping (the best score, ``state_dict`` for resuming); the
    :class:`~ignite_app.runstate.checkpoint.DurableSaver` makes each write atomic and durable.
    """
    handler = Checkpoint(
        to_save,
        DurableSaver(out_dir),
        filename_pattern=BEST_MODEL.replace(".pt", ".{ext}"),
        score_function=lambda engine: engine.state.metrics[metric],
        score_name=metric,
        n_saved=1,
        global_step_transform=global_step_from_engine(trainer),
    )
    evaluator.add_event_handler(Events.COMPLETED, handler)  # COMPLETED: the metrics are computed by then

    # ignite's Checkpoint fires SAVED_CHECKPOINT on the evaluator after each write; relay it to the trainer as
    # AppEvents.BEST_MODEL_SAVED, where users expect training-level events. Registering the checkpoint events now
    # (ignite would do it at the first save) lets the relay be attached before the run.
    _register_app_events(trainer)
    evaluator.register_events(*CheckpointEvents)

    def announce(engine: Engine) -> None:
        metrics = engine.state.metrics
        trainer.state.best_model = BestModel(Path(out_dir) / str(handler.last_checkpoint), float(metrics[ACCURACY]),
                                             trainer.state.epoch, metric, float(metrics[metric]))
        trainer.fire_event(AppEvents.BEST_MODEL_SAVED)

    evaluator.add_event_handler(CheckpointEvents.SAVED_CHECKPOINT, announce)
    return handler


def _register_app_events(trainer: Engine) -> None:
    if not trainer.has_registered_events(AppEvents.VALIDATION_COMPLETED):
        trainer.register_events(*AppEvents)


def attach_early_stopping(evaluator: Engine, trainer: Engine, patience: int,
                          metric: str = ACCURACY) -> EarlyStopping | None:
    """Stop training after ``patience`` validations without a better ``metric`` (``--best-metric``); ``None`` when
    patience is 0."""
    if patience == 0:
        return None
    handler = EarlyStopping(patience, score_function=lambda engine: engine.state.metrics[metric], trainer=trainer)
    evaluator.add_event_handler(Events.COMPLETED, handler)
    return handler


def every_seconds(interval: float) -> Callable[[Engine, int], bool]:
    """Event filter: true at most once per ``interval`` seconds, and always on the last iteration of an epoch."""
    last = [-math.inf]

    def event_filter(engine: Engine, event: int) -> bool:
        now = time.monotonic()
        if now - last[0] >= interval or engine.state.iteration % engine.state.epoch_length == 0:
            last[0] = now
            return True
        return False

    return event_filter


def attach_progress_bar(trainer: Engine, refresh_seconds: float = 0.2) -> ProgressBar:
    """An ignite ``ProgressBar`` with the running loss, cleared at the end of each epoch.

    Redrawn at most every ``refresh_seconds``: firing on every iteration costs ~0.3 ms, 10% of a digits step.
    """
    bar = ProgressBar(persist=False)
    bar.attach(trainer, output_transform=lambda out: {"loss": float(out["loss"])},
               event_name=Events.ITERATION_COMPLETED(event_filter=every_seconds(refresh_seconds)))
    return bar


@dataclass(frozen=True)
class EpochRecord:
    """One line of the run's history: the epoch's training and validation results."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    lr: float
    seconds: float
    # scores of the probabilities (ScoreMetric)
    ap_macro: float = math.nan
    roc_auc_macro: float = math.nan
    ece: float = math.nan
    top5_accuracy: float | None = None  # more than 5 classes only

    def summary(self, max_epochs: int | None) -> str:
        """The console and ``train.log`` line of this epoch."""
        width = len(str(max_epochs or self.epoch))
        top5 = "" if self.top5_accuracy is None else f" | top5 {100 * self.top5_accuracy:6.2f}%"
        return (f"epoch {self.epoch:>{width}}/{max_epochs} | train_loss {self.train_loss:.4f} | "
                f"val_loss {self.val_loss:.4f} | val_acc {100 * self.val_accuracy:6.2f}%{top5} | "
                f"f1_macro {self.f1_macro:.4f} | mAP {self.ap_macro:.4f} | lr {self.lr:.2e} | {self.seconds:.1f}s")


class EpochSummary:
    """Collect an :class:`EpochRecord` after each epoch and log its summary line."""

    def __init__(self, evaluator: Engine) -> None:
        self.evaluator = evaluator
        self.records: list[EpochRecord] = []
        self.notes: list[Callable[[Engine], str]] = []  # each adds text to the end of the line (" | ...")
        self._started = time.perf_counter()

    def start(self, engine: Engine) -> None:
        self._started = time.perf_counter()

    def __call__(self, engine: Engine) -> None:
        val = self.evaluator.state.metrics
        record = EpochRecord(
            epoch=engine.state.epoch, train_loss=engine.state.metrics[EPOCH_LOSS], val_loss=val[VAL_LOSS],
            val_accuracy=val[ACCURACY], precision_macro=val[PRECISION_MACRO], recall_macro=val[RECALL_MACRO],
            f1_macro=val[F1_MACRO], lr=engine.state.metrics[LR], seconds=time.perf_counter() - self._started,
            top5_accuracy=val.get(TOP5_ACCURACY), **{name: val[name] for name in SCORE_SCALARS if name in val})
        self.records.append(record)
        log.info(record.summary(engine.state.max_epochs) + "".join(note(engine) for note in self.notes))


def attach_epoch_summary(trainer: Engine, evaluator: Engine) -> EpochSummary:
    """Log one summary line per epoch; attach last, once every other epoch handler has run."""
    summary = EpochSummary(evaluator)
    trainer.add_event_handler(Events.EPOCH_STARTED, summary.start)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, summary)
    return summary
