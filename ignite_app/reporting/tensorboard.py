"""The validation report in TensorBoard: heatmaps, per-class scalars, the report as text, hparams, parameter norms.

Written by rank 0 into the run's own event file (step = epoch unless stated):

=========================================  ========  ====================================================
tag                                        tab       what
=========================================  ========  ====================================================
``val/confusion_matrix``                   IMAGES    counts heatmap, class names on both axes
``val/confusion_matrix_normalized``        IMAGES    rows divided by their sum: the diagonal is the recall
``val_per_class/<class>/precision`` ...    SCALARS   precision, recall, f1 and ap of every class
``val/classification_report``              TEXT      the per-class table with macro and weighted rows
``val/pr_curve/<class>``                   PR CURVES ``--pr-curves N`` classes of lowest AP (127 thresholds)
``val/reliability``                        IMAGES    the reliability diagram (calibration, ECE in the title)
``val/mistakes``                           IMAGES    ``--log-mistakes K``: the K most confident wrong predictions
``custom_scalars``                         CUSTOM    the layout: train/val loss on one chart; accuracy, F1, mAP
``hparam/best_accuracy``                   HPARAMS   at the end of a run, with the config's options (and
                                                     ``hparam/best_<metric>`` for another ``--best-metric``)
``weights_norm/<param>``                   SCALARS   ``--log-weights N``: L2 norm per parameter, step = iteration
``grads_norm/<param>``                     SCALARS   ``--log-grads N``: L2 norm of its gradient, step = iteration
=========================================  ========  ====================================================

The report costs about 30 ms per validation (see ``benchmarks/report_cost.py``), ~7% of a tiny digits epoch, so
the evaluator only stamps the wall time and hands the (immutable) report to one background thread, which writes
everything with that time. The thread frees the training loop while it waits for
an accelerator or for data; it cannot make drawing free on a CPU that training already keeps busy (drawing is
Python code, which holds the GIL).
The training checkpoint of an epoch is written right after its validation; waiting there for the drawing would put
it back on the training loop's path. The checkpoint records the last validation's report instead, and a resumed
run drops that epoch's report events and writes them again: whether or not the interrupted process finished them,
each appears exactly once. At the end of a run (or on an error or a stop signal) the app waits for the thread
before it closes the event file.
"""

from __future__ import annotations

import re
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import global_step_from_engine
from ignite.handlers.tensorboard_logger import (
    GradsScalarHandler,
    TensorboardLogger,
    WeightsScalarHandler,
)
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.text.summary_v2 import text_pb
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from ignite_app.config import TrainConfig
from ignite_app.handlers import (
    EPOCH_LOSS,
    LR,
    LR_BACKBONE,
    SCORE_SCALARS,
    TRAIN_TAG,
    VAL_SCALARS,
    VAL_TAG,
    BestReport,
)
from ignite_app.metrics import (
    ACCURACY,
    AP_MACRO,
    F1_MACRO,
    MISTAKES,
    REPORT,
    VAL_LOSS,
    ClassificationReport,
    Mistakes,
    ScoreReport,
)
from ignite_app.reporting.heatmap import heatmap_png
from ignite_app.reporting.mistakes import mistakes_png
from ignite_app.reporting.reliability import reliability_image
from ignite_app.runstate.jobs import BackgroundJobs
from ignite_app.reporting.writers import heatmap_title, png_size, report_markdown

CONFUSION_MATRIX_TAG = "val/confusion_matrix"
NORMALIZED_TAG = "val/confusion_matrix_normalized"
REPORT_TEXT_TAG = "val/classification_report"
# A top-level prefix of their own: under val/, C x 4 per-class tags would bury the main validation curves.
PER_CLASS_PREFIX = "val_per_class/"
PER_CLASS_SCORES = ("precision", "recall", "f1")  # and "ap" when the report carries scores
PR_CURVE_PREFIX = "val/pr_curve/"
RELIABILITY_TAG = "val/reliability"
MISTAKES_TAG = "val/mistakes"
DEFAULT_PR_CURVES = 20  # --pr-curves: 1,000 curves cost 1.4 s and 3 MB per validation
BEST_ACCURACY_TAG = "hparam/best_accuracy"
# plus every PER_CLASS_PREFIX and PR_CURVE_PREFIX tag
REPORT_TAGS = (CONFUSION_MATRIX_TAG, NORMALIZED_TAG, REPORT_TEXT_TAG, RELIABILITY_TAG, MISTAKES_TAG)
# The custom-scalars layout (CUSTOM SCALARS tab): the curves people look at first, on two charts.
OVERVIEW_LAYOUT = {"overview": {
    "loss: train and validation": ["Multiline", [f"{TRAIN_TAG}/{EPOCH_LOSS}", f"{VAL_TAG}/{VAL_LOSS}"]],
    "validation: accuracy, macro F1, mAP": ["Multiline", [f"{VAL_TAG}/{name}" for name in (ACCURACY, F1_MACRO,
                                                                                          AP_MACRO)]],
}}
REPORT_LOGGING = "report_logging"  # the training checkpoint's key for ReportLogger.state_dict()
ParamNormHandler = WeightsScalarHandler | GradsScalarHandler


def class_tags(class_names: Sequence[str]) -> list[str]:
    """Each class name as one tag component: ``/`` (which would nest groups) and whitespace become ``_``.

    TensorBoard accepts other characters as they are. Two names that become the same (``a b`` and ``a_b``) are told
    apart by the class index: ``a_b`` and ``a_b_1``.
    """
    tags: list[str] = []
    for i, name in enumerate(class_names):
        tag = re.sub(r"[/\s]", "_", name)
        tags.append(f"{tag}_{i}" if tag in tags else tag)
    return tags


def image_summary(tag: str, png: bytes) -> Summary:
    """An image summary holding ``png`` as it is (``SummaryWriter.add_image`` would decode and encode it again)."""
    width, height = png_size(png)
    return Summary(value=[Summary.Value(tag=tag, image=Summary.Image(height=height, width=width, colorspace=3,
                                                                      encoded_image_string=png))])


def write_report_summaries(writer: SummaryWriter, report: ClassificationReport, epoch: int, walltime: float,
                           pr_curves: int = DEFAULT_PR_CURVES, mistakes: Mistakes | None = None) -> None:
    """Write one validation's per-class scalars, report text and heatmaps, and with its scores the PR curves of the
    ``pr_curves`` classes of lowest AP and the reliability diagram, and the ``mistakes`` grid, all at step ``epoch``
    and ``walltime``."""
    per_class = report.per_class
    scores = PER_CLASS_SCORES + (("ap",) if report.scores is not None else ())
    tags = class_tags(report.class_names)
    for tag, (_, row) in zip(tags, per_class.iterrows()):
        for score in scores:
            writer.add_scalar(f"{PER_CLASS_PREFIX}{tag}/{score}", float(row[score]), epoch, walltime=walltime)
    if report.scores is not None:
        write_score_summaries(writer, report.scores, tags, epoch, walltime, pr_curves)
    if mistakes is not None:
        title = f"epoch {epoch}: the {len(mistakes)} most confident mistakes (true -> predicted, confidence)"
        writer.file_writer.add_summary(image_summary(MISTAKES_TAG, mistakes_png(mistakes, report.class_names, title)),
                                       epoch, walltime)
    # text_pb rather than SummaryWriter.add_text, which appends "/text_summary" to the tag and stores a 1-element
    # list, which the TEXT tab shows as a table around the markdown
    writer.file_writer.add_summary(text_pb(REPORT_TEXT_TAG, report_markdown(report)), epoch, walltime)
    title = heatmap_title(epoch, report)
    for tag, normalize in ((CONFUSION_MATRIX_TAG, False), (NORMALIZED_TAG, True)):
        png = heatmap_png(report.counts, report.class_names, normalize=normalize, title=title)
        writer.file_writer.add_summary(image_summary(tag, png), epoch, walltime)
    writer.flush()  # on disk when the job ends: a kill after the next checkpoint cannot lose them


def write_score_summaries(writer: SummaryWriter, scores: ScoreReport, tags: Sequence[str], epoch: int,
                          walltime: float, pr_curves: int) -> None:
    """The PR curves of the ``pr_curves`` classes of lowest AP (worst first) and the reliability diagram."""
    for i in scores.worst_classes(pr_curves):
        curve = scores.pr_curve(i)  # the counts add_pr_curve would compute from the raw scores
        writer.add_pr_curve_raw(f"{PR_CURVE_PREFIX}{tags[i]}", *curve, global_step=epoch,
                                num_thresholds=len(curve.tp), walltime=walltime)
    title = f"epoch {epoch}: ECE {scores.ece:.4f} over {scores.num_samples} samples"
    writer.file_writer.add_summary(image_summary(RELIABILITY_TAG, reliability_image(scores, title)), epoch, walltime)


def attach_tensorboard(trainer: Engine, evaluator: Engine, log_dir: Path, log_every: int) -> TensorboardLogger:
    """Write ``train/loss`` (step = iteration) and the epoch scalars ``train/*``, ``val/*`` (step = epoch).

    The event file is flushed after every validation, so TensorBoard shows an epoch as soon as it is done.
    """
    # A queue of 1000 events instead of SummaryWriter's 10: a validation writes ~3 events per class, and a full
    # queue makes every further event wait for the writer thread (up to 5 ms each, the interpreter's thread switch
    # interval). The flushes below and at the end of each report job still put every validation on disk.
    tb = TensorboardLogger(log_dir=str(log_dir), max_queue=1000)
    tb.attach_output_handler(trainer, Events.ITERATION_COMPLETED(every=log_every), tag=TRAIN_TAG,
                             output_transform=lambda out: {"loss": float(out["loss"])})
    tb.attach_output_handler(trainer, Events.EPOCH_COMPLETED, tag=TRAIN_TAG,
                             metric_names=[EPOCH_LOSS, LR, LR_BACKBONE])
    tb.attach_output_handler(evaluator, Events.COMPLETED, tag=VAL_TAG, metric_names=[*VAL_SCALARS, *SCORE_SCALARS],
                             global_step_transform=global_step_from_engine(trainer))
    evaluator.add_event_handler(Events.COMPLETED, lambda _: tb.writer.flush())
    trainer.add_event_handler(Events.STARTED, write_layout, tb.writer)
    return tb


def write_layout(trainer: Engine, writer: SummaryWriter) -> None:
    """Write the custom-scalars layout once per run: when it starts, not when it resumes (the first process's
    layout event predates every checkpoint, so a resume keeps it)."""
    if trainer.state.iteration == 0:
        writer.add_custom_scalars(OVERVIEW_LAYOUT)


class ReportLogger:
    """Evaluator handler: send each validation's report to TensorBoard through :class:`BackgroundJobs`.

    Its ``state_dict`` is the last validation's counts, epoch and wall time; after :meth:`load_state_dict`, the
    trainer's ``STARTED`` writes that validation again (see the module docstring).
    """

    def __init__(self, writer: SummaryWriter, class_names: tuple[str, ...], jobs: BackgroundJobs,
                 pr_curves: int = DEFAULT_PR_CURVES) -> None:
        self.writer, self.class_names, self.jobs, self.pr_curves = writer, class_names, jobs, pr_curves
        self.last: dict[str, Any] | None = None
        self._replay: dict[str, Any] | None = None

    def __call__(self, evaluator: Engine, trainer: Engine) -> None:
        # At most one validation in flight: a checkpoint then only needs to carry the last one. This waits only if
        # the previous validation's drawing took longer than a whole epoch.
        self.jobs.wait()
        metrics = evaluator.state.metrics
        self._submit(metrics[REPORT], metrics.get(MISTAKES), trainer.state.epoch, time.time())

    def _submit(self, report: ClassificationReport, mistakes: Mistakes | None, epoch: int, walltime: float) -> None:
        # The wall time is taken now, not when the worker gets to it: a resumed run drops every event stamped
        # after its checkpoint, and this validation happened before the checkpoint of its epoch.
        self.last = {"epoch": epoch, "walltime": walltime, "counts": torch.from_numpy(report.counts.copy()),
                     "scores": report.scores.state_dict() if report.scores is not None else None,
                     "mistakes": mistakes.state_dict() if mistakes is not None else None}
        self.jobs.submit(f"logging the validation report of epoch {epoch} to TensorBoard", write_report_summaries,
                         self.writer, report, epoch, walltime, self.pr_curves, mistakes)

    def replay(self, engine: Engine) -> None:
        """Write the validation restored by :meth:`load_state_dict` again (attached to the trainer's STARTED)."""
        if self._replay is not None:
            state, self._replay = self._replay, None
            scores, mistakes = state.get("scores"), state.get("mistakes")
            report = ClassificationReport.from_counts(state["counts"].numpy(), self.class_names,
                                                      ScoreReport.from_state_dict(scores) if scores else None)
            self._submit(report, Mistakes.from_state_dict(mistakes) if mistakes else None, int(state["epoch"]),
                         float(state["walltime"]))

    def state_dict(self) -> dict[str, Any]:
        return dict(self.last) if self.last is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last = self._replay = dict(state) if state else None


def attach_report_logging(evaluator: Engine, trainer: Engine, tb_logger: TensorboardLogger,
                          class_names: tuple[str, ...], jobs: BackgroundJobs,
                          pr_curves: int = DEFAULT_PR_CURVES) -> ReportLogger:
    """Log each validation's report to TensorBoard (step = the trainer's epoch), drawn by ``jobs``' thread."""
    logger = ReportLogger(tb_logger.writer, class_names, jobs, pr_curves)
    evaluator.add_event_handler(Events.COMPLETED, logger, trainer)
    trainer.add_event_handler(Events.STARTED, logger.replay)
    return logger


def pending_report_events(checkpoint: Mapping[str, Any]) -> Callable[[Event], bool] | None:
    """Which events a run resumed from ``checkpoint`` must drop because :meth:`ReportLogger.replay` rewrites them.

    The interrupted process may or may not have written the last validation's report before it stopped.
    """
    state = checkpoint.get(REPORT_LOGGING)
    if not state:
        return None
    epoch = int(state["epoch"])

    def is_pending(event: Event) -> bool:
        return event.step == epoch and any(v.tag in REPORT_TAGS or v.tag.startswith((PER_CLASS_PREFIX,
                                                                                     PR_CURVE_PREFIX))
                                           for v in event.summary.value)

    return is_pending


def hparam_values(config: TrainConfig) -> dict[str, bool | int | float | str]:
    """The config's options as HPARAMS values: paths and lists as text, optional options always as text (``"none"``).

    TensorBoard gives a column one type, found from one run's values; an option that is a number in one run and
    ``None`` in another would mix types, so optional options are text everywhere.
    """
    hints = typing.get_type_hints(TrainConfig)
    values: dict[str, bool | int | float | str] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        optional = type(None) in typing.get_args(hints[f.name])
        if isinstance(value, tuple):  # --handler specs: one text cell
            value = ",".join(value)
        values[f.name] = "none" if value is None else str(value) if optional or isinstance(value, Path) else value
    return values


def write_hparams(writer: SummaryWriter, values: Mapping[str, Any], metrics: Mapping[str, float], step: int) -> None:
    """Write an hparams session into ``writer``'s own event file: one HPARAMS row per run folder.

    ``SummaryWriter.add_hparams`` would write it into a new sub-folder, which TensorBoard shows as a second run.
    """
    for summary in hparams(dict(values), dict(metrics)):  # experiment, session start, session end
        writer.file_writer.add_summary(summary, step)
    for tag, value in metrics.items():  # the HPARAMS tab reads a metric's value from the scalar of that tag
        writer.add_scalar(tag, value, step)
    writer.flush()


def attach_hparams(trainer: Engine, tb_logger: TensorboardLogger, config: TrainConfig,
                   best: BestReport) -> Callable[[Engine], None]:
    """When the run completes (not when it is interrupted), write the config and the best accuracy as hparams, and
    the value of the ``--best-metric`` that chose the best epoch (``hparam/best_<metric>``) when it is another."""

    def log_hparams(engine: Engine) -> None:
        if best.report is not None:
            metrics = {BEST_ACCURACY_TAG: best.accuracy}
            if best.metric != ACCURACY:
                metrics[f"hparam/best_{best.metric}"] = best.value
            write_hparams(tb_logger.writer, hparam_values(config), metrics, engine.state.epoch)

    trainer.add_event_handler(Events.COMPLETED, log_hparams)
    return log_hparams


def attach_norm_logging(trainer: Engine, tb_logger: TensorboardLogger, model: nn.Module, weights_every: int | None,
                        grads_every: int | None) -> list[ParamNormHandler]:
    """Log each parameter's L2 norm (``weights_norm/<name>``) and its gradient's (``grads_norm/<name>``).

    ignite's handlers, every ``weights_every`` / ``grads_every`` iterations (``None``: off); a parameter name's
    dots become slashes (``features.0.weight`` -> ``weights_norm/features/0/weight``). ITERATION_COMPLETED sees this
    step's gradients: the trainer clears them at the start of the next step, not after ``optimizer.step()``.
    """
    attached: list[ParamNormHandler] = []
    for every, handler in ((weights_every, WeightsScalarHandler), (grads_every, GradsScalarHandler)):
        if every is not None:
            attached.append(handler(model, reduction=torch.norm))
            tb_logger.attach(trainer, attached[-1], Events.ITERATION_COMPLETED(every=every))
    return attached

