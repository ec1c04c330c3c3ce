"""TensorBoard for the training recipe: ``train/grad_norm`` (``--clip-grad-norm``), ``val_raw/accuracy`` and
``val_raw/loss`` (``--ema-decay``), ``val/top5_accuracy`` (more than 5 classes)."""

from __future__ import annotations

from ignite.engine import Engine, Events
from ignite.handlers import global_step_from_engine
from ignite.handlers.tensorboard_logger import TensorboardLogger
from torch import Tensor

from ignite_app.handlers import VAL_TAG
from ignite_app.metrics import ACCURACY, VAL_LOSS
from ignite_app.metrics.topk import TOP5_ACCURACY
from ignite_app.recipe.wiring import VAL_RAW_TAG

GRAD_NORM_TAG = "train/grad_norm"


class GradNormLogger:
    """Write the gradients' global norm before clipping every ``every`` iterations (step = iteration).

    The norm exists after an optimizer step only; with ``--accumulate-steps`` a point in the middle of a group shows
    the last step's norm. It is read from the device only when written.
    """

    def __init__(self, tb_logger: TensorboardLogger, every: int) -> None:
        self.tb_logger, self.every = tb_logger, every
        self.last: Tensor | None = None

    def __call__(self, engine: Engine) -> None:
        norm = engine.state.output.get("grad_norm")
        if norm is not None:
            self.last = norm
        if engine.state.iteration % self.every == 0 and self.last is not None:
            self.tb_logger.writer.add_scalar(GRAD_NORM_TAG, float(self.last), engine.state.iteration)


def attach_recipe_tensorboard(tb_logger: TensorboardLogger, trainer: Engine, evaluator: Engine,
                              raw_evaluator: Engine | None, log_every: int, grad_norm: bool, top5: bool) -> None:
    """Log what the recipe's options add; each part only when its option (or the class count) asks for it."""
    if grad_norm:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, GradNormLogger(tb_logger, log_every))
    if top5:  # the evaluator's TensorBoard handler writes val/* already; this adds the one optional scalar
        tb_logger.attach_output_handler(evaluator, Events.COMPLETED, tag=VAL_TAG, metric_names=[TOP5_ACCURACY],
                                        global_step_transform=global_step_from_engine(trainer))
        evaluator.add_event_handler(Events.COMPLETED, lambda _: tb_logger.writer.flush())  # as val/* is
    if raw_evaluator is not None:
        tb_logger.attach_output_handler(raw_evaluator, Events.COMPLETED, tag=VAL_RAW_TAG,
                                        metric_names=[ACCURACY, VAL_LOSS],
                                        global_step_transform=global_step_from_engine(trainer))
        raw_evaluator.add_event_handler(Events.COMPLETED, lambda _: tb_logger.writer.flush())
