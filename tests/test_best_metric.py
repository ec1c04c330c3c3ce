"""--best-metric: the best model, its report and early stopping follow accuracy, macro F1 or mAP (scripted)."""

import numpy as np
import pytest
from ignite.engine import Engine, Events
from torch import nn

from ignite_app.config import ConfigError, TrainConfig
from ignite_app.events import AppEvents
from ignite_app.handlers import (
    BestReport,
    attach_best_checkpoint,
    attach_best_report,
    attach_early_stopping,
    attach_validation,
)
from ignite_app.metrics import ACCURACY, AP_MACRO, F1_MACRO, REPORT, ClassificationReport
from ignite_app.runstate.checkpoint import Value, load_checkpoint
from ignite_app.runstate.rundir import BEST_MODEL

# each metric has its best epoch elsewhere: accuracy 2, macro F1 3, mAP 5 (and mAP falls after epoch 1)
TRAJECTORY = {ACCURACY: [0.80, 0.90, 0.85, 0.86, 0.87], F1_MACRO: [0.70, 0.75, 0.88, 0.80, 0.85],
              AP_MACRO: [0.95, 0.93, 0.94, 0.97, 0.99]}
BEST_EPOCH = {ACCURACY: 2, F1_MACRO: 3, AP_MACRO: 5}


def scripted_pair():
    """A do-nothing trainer whose validation after epoch e publishes TRAJECTORY's values and a report."""
    trainer, evaluator = Engine(lambda e, b: None), Engine(lambda e, b: None)

    @evaluator.on(Events.COMPLETED)
    def script(engine):
        epoch = trainer.state.epoch
        counts = np.array([[epoch, 1], [0, 3]])  # one report per epoch, told apart by its counts
        engine.state.metrics.update({name: values[epoch - 1] for name, values in TRAJECTORY.items()})
        engine.state.metrics[REPORT] = ClassificationReport.from_counts(counts, ["a", "b"])

    attach_validation(trainer, evaluator, [0])
    return trainer, evaluator


@pytest.mark.parametrize("metric", [ACCURACY, F1_MACRO, AP_MACRO])
def test_the_best_model_and_its_report_follow_the_chosen_metric(tmp_path, metric):
    trainer, evaluator = scripted_pair()
    best = attach_best_report(evaluator, trainer, ("a", "b"), metric)
    contents = {"state_dict": nn.Linear(2, 2), "best_acc": Value(lambda: best.accuracy),
                "best_metric": Value(lambda: {"name": best.metric, "value": best.value}),
                "epoch": Value(lambda: trainer.state.epoch)}
    attach_best_checkpoint(evaluator, trainer, contents, tmp_path, metric)
    announced = []
    trainer.add_event_handler(AppEvents.BEST_MODEL_SAVED, lambda t: announced.append(t.state.best_model))
    trainer.run([0], max_epochs=5)
    epoch = BEST_EPOCH[metric]
    saved = load_checkpoint(tmp_path / BEST_MODEL)
    assert saved["epoch"] == epoch and best.epoch == epoch
    assert saved["best_acc"] == TRAJECTORY[ACCURACY][epoch - 1]  # the tutorial's key: that model's accuracy
    assert saved["best_metric"] == {"name": metric, "value": TRAJECTORY[metric][epoch - 1]}
    assert best.report.counts[0, 0] == epoch
    last = announced[-1]
    assert (last.epoch, last.metric, last.value, last.accuracy) == (epoch, metric, TRAJECTORY[metric][epoch - 1],
                                                                    TRAJECTORY[ACCURACY][epoch - 1])


@pytest.mark.parametrize(("metric", "stop_epoch"), [(ACCURACY, 3), (F1_MACRO, 4), (AP_MACRO, 2)])
def test_early_stopping_watches_the_chosen_metric(metric, stop_epoch):
    trainer, evaluator = scripted_pair()
    attach_early_stopping(evaluator, trainer, 1, metric)
    trainer.run([0], max_epochs=5)
    assert trainer.state.epoch == stop_epoch


def test_the_best_report_survives_a_resume_with_its_metric_and_refuses_another():
    trainer, evaluator = scripted_pair()
    best = attach_best_report(evaluator, trainer, ("a", "b"), F1_MACRO)
    trainer.run([0], max_epochs=4)
    state = best.state_dict()
    restored = BestReport(("a", "b"), F1_MACRO)
    restored.load_state_dict(state)
    assert (restored.epoch, restored.value, restored.accuracy) == (3, 0.88, 0.85)
    assert restored.report == best.report
    with pytest.raises(ValueError, match="chose its best model by f1_macro, this run by accuracy; resume with "
                                         "--best-metric f1_macro"):
        BestReport(("a", "b")).load_state_dict(state)


def test_best_metric_is_an_option_that_changes_results():
    assert TrainConfig(best_metric="ap_macro").result_differences(TrainConfig()) == [
        "--best-metric: 'accuracy' -> 'ap_macro'"]
    with pytest.raises(ConfigError, match="--best-metric must be one of accuracy, f1_macro, ap_macro; got 'loss'"):
        TrainConfig(best_metric="loss")
