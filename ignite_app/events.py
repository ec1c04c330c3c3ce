"""Events the app fires on the trainer, on top of ignite's own, so that users can react to what the app does.

Subscribe before the run, like to any ignite event::

    from ignite_app import AppEvents, build

    app = build(config)

    @app.trainer.on(AppEvents.BEST_MODEL_SAVED)
    def announce(trainer):
        best = trainer.state.best_model
        print(f"new best model: {best.path} ({best.accuracy:.2%} at epoch {best.epoch})")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ignite.engine import EventEnum


class AppEvents(EventEnum):
    """Custom events fired on ``app.trainer``.

    - ``VALIDATION_COMPLETED``: after each validation (inside the trainer's ``EPOCH_COMPLETED``, right after the
      evaluator has finished). ``trainer.state.val_report`` holds the epoch's
      :class:`~ignite_app.metrics.ClassificationReport`, ``trainer.state.val_metrics`` the evaluator's scalar
      metrics (``loss``, ``accuracy``, ``precision_macro``, ``recall_macro``, ``f1_macro``, ``ap_macro``,
      ``roc_auc_macro``, ``ece``).
    - ``BEST_MODEL_SAVED``: after ``best_model.pt`` has been written (every process, though only rank 0 writes).
      ``trainer.state.best_model`` is a :class:`BestModel`, chosen by ``--best-metric``.
    """

    VALIDATION_COMPLETED = "validation_completed"
    BEST_MODEL_SAVED = "best_model_saved"


@dataclass(frozen=True)
class BestModel:
    """The best model so far: where it is, its validation accuracy, the epoch it comes from, and the metric that
    chose it (``--best-metric``) with its value."""

    path: Path
    accuracy: float
    epoch: int
    metric: str = "accuracy"
    value: float = float("nan")
