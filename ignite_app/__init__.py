"""ignite_app: event-driven image-classification training on pytorch-ignite.

The public API, in the order a user meets it::

    from ignite.engine import Events
    from ignite_app import AppEvents, TrainConfig, build

    app = build(TrainConfig(epochs=5))                # wired, not run: engines, model, data, handlers

    @app.trainer.on(Events.EPOCH_COMPLETED(every=2))  # any ignite handler, on app.trainer or app.evaluator
    def every_other_epoch(trainer):
        print(trainer.state.epoch, app.evaluator.state.metrics["accuracy"])

    @app.trainer.on(AppEvents.BEST_MODEL_SAVED)       # the app's own events
    def new_best(trainer):
        print(trainer.state.best_model)

    result = app.run()

The names below are imported lazily, so ``import ignite_app`` (and the command line's ``--help``) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ignite_app.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    # configuration and running
    "TrainConfig": "ignite_app.config",
    "ConfigError": "ignite_app.config",
    "App": "ignite_app.app",
    "Handlers": "ignite_app.app",
    "RunResult": "ignite_app.app",
    "build": "ignite_app.app",
    "run": "ignite_app.app",
    "launch": "ignite_app.cli.worker",
    # the registries: add models, datasets and optimizers under a name
    "register_model": "ignite_app.registry",
    "register_dataset": "ignite_app.registry",
    "register_optimizer": "ignite_app.registry",
    "ModelSpec": "ignite_app.models",
    "DataBundle": "ignite_app.data",
    "Classifier": "ignite_app.models",
    "Preprocess": "ignite_app.models",
    # events and errors
    "AppEvents": "ignite_app.events",
    "BestModel": "ignite_app.events",
    "UsageError": "ignite_app.errors",
    "TrainingDiverged": "ignite_app.errors",
    "Interrupted": "ignite_app.errors",
    # the metric and its report
    "ConfusionMatrixMetric": "ignite_app.metrics",
    "ClassificationReport": "ignite_app.metrics",
    "read_label_map": "ignite_app.metrics",
    "write_label_map": "ignite_app.metrics",
    # the scores of the probabilities (AP, ROC-AUC, calibration)
    "ScoreMetric": "ignite_app.metrics",
    "ScoreReport": "ignite_app.metrics",
    # evaluating and exporting a saved model
    "evaluate_checkpoint": "ignite_app.evaluation",
    "export_model": "ignite_app.export",
    "load_artifact": "ignite_app.artifacts",
    "load_checkpoint": "ignite_app.runstate.checkpoint",
    # the handler helpers build() uses, for users who wire their own engines
    "attach_best_checkpoint": "ignite_app.handlers",
    "attach_best_report": "ignite_app.handlers",
    "attach_data_order": "ignite_app.handlers",
    "attach_early_stopping": "ignite_app.handlers",
    "attach_epoch_loss": "ignite_app.handlers",
    "attach_epoch_summary": "ignite_app.handlers",
    "attach_lr_scheduler": "ignite_app.handlers",
    "attach_nan_guard": "ignite_app.handlers",
    "attach_progress_bar": "ignite_app.handlers",
    "attach_tensorboard": "ignite_app.reporting.tensorboard",
    "attach_validation": "ignite_app.handlers",
    "attach_training_checkpoint": "ignite_app.runstate.checkpoint",
    "attach_graceful_stop": "ignite_app.runstate.signals",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # static type checkers and IDEs see real imports
    from ignite_app.app import App, Handlers, RunResult, build, run  # noqa: F401
    from ignite_app.cli.worker import launch  # noqa: F401
    from ignite_app.artifacts import load_artifact  # noqa: F401
    from ignite_app.config import ConfigError, TrainConfig  # noqa: F401
    from ignite_app.data import DataBundle  # noqa: F401
    from ignite_app.errors import Interrupted, TrainingDiverged, UsageError  # noqa: F401
    from ignite_app.evaluation import evaluate_checkpoint  # noqa: F401
    from ignite_app.export import export_model  # noqa: F401
    from ignite_app.events import AppEvents, BestModel  # noqa: F401
    from ignite_app.handlers import (  # noqa: F401
        attach_best_checkpoint,
        attach_best_report,
        attach_data_order,
        attach_early_stopping,
        attach_epoch_loss,
        attach_epoch_summary,
        attach_lr_scheduler,
        attach_nan_guard,
        attach_progress_bar,
        attach_validation,
    )
    from ignite_app.metrics import (  # noqa: F401
        ClassificationReport,
        ConfusionMatrixMetric,
        ScoreMetric,
        ScoreReport,
        read_label_map,
        write_label_map,
    )
    from ignite_app.models import Classifier, ModelSpec, Preprocess  # noqa: F401
    from ignite_app.registry import register_dataset, register_model, register_optimizer  # noqa: F401
    from ignite_app.reporting.tensorboard import attach_tensorboard  # noqa: F401
    from ignite_app.runstate.checkpoint import attach_training_checkpoint, load_checkpoint  # noqa: F401
    from ignite_app.runstate.signals import attach_graceful_stop  # noqa: F401
