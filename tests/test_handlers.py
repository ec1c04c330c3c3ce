"""Each handler alone, on real ignite engines, with scripted metric values."""

import math

import pytest
import torch
from ignite.engine import Engine, Events
from torch import nn

import ignite_app.runstate.checkpoint as checkpoint_module
from ignite_app.runstate.checkpoint import Value, load_checkpoint
from ignite_app.runstate.rundir import BEST_MODEL
from ignite_app.config import TrainConfig
from ignite_app.data import EpochBatchSampler
from ignite_app.errors import TrainingDiverged
from ignite_app.handlers import (
    EPOCH_LOSS,
    LR,
    attach_best_checkpoint,
    attach_data_order,
    attach_early_stopping,
    attach_epoch_loss,
    attach_lr_scheduler,
    attach_nan_guard,
    attach_validation,
    every_seconds,
)
from ignite_app.metrics import ACCURACY


def scripted_pair(accuracies):
    """A do-nothing trainer whose validation after epoch e reports accuracies[e - 1]."""
    trainer, evaluator = Engine(lambda e, b: None), Engine(lambda e, b: None)

    @evaluator.on(Events.COMPLETED)  # registered first: the handlers under test see the scripted value
    def script(engine):
        engine.state.metrics[ACCURACY] = accuracies[trainer.state.epoch - 1]

    attach_validation(trainer, evaluator, [0])
    return trainer, evaluator


def best_contents(model, trainer, evaluator):
    return {"state_dict": model, "best_acc": Value(lambda: evaluator.state.metrics[ACCURACY]),
            "epoch": Value(lambda: trainer.state.epoch)}


@pytest.mark.parametrize(
    ("accuracies", "best_epoch"),
    [([0.5, 0.8, 0.7], 2), ([0.9, 0.8, 0.7], 1), ([0.1, 0.2, 0.3, 0.4], 4), ([0.6, 0.6, 0.5], 1)],
)
def test_best_checkpoint_follows_accuracy(tmp_path, accuracies, best_epoch):
    trainer, evaluator = scripted_pair(accuracies)
    model = nn.Linear(2, 2)
    attach_best_checkpoint(evaluator, trainer, best_contents(model, trainer, evaluator), tmp_path)
    trainer.run([0], max_epochs=len(accuracies))
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST_MODEL]
    saved = load_checkpoint(tmp_path / BEST_MODEL)
    assert saved["epoch"] == best_epoch and saved["best_acc"] == accuracies[best_epoch - 1]
    assert torch.equal(saved["state_dict"]["weight"], model.weight)


def test_best_model_stays_on_disk_while_a_better_one_is_written(tmp_path, monkeypatch):
    trainer, evaluator = scripted_pair([0.5, 0.6, 0.7])
    attach_best_checkpoint(evaluator, trainer, best_contents(nn.Linear(2, 2), trainer, evaluator), tmp_path)
    real_write = checkpoint_module.atomic_write
    present_during_write = []

    def watching_write(path, write):
        present_during_write.append((tmp_path / BEST_MODEL).exists())
        real_write(path, write)

    monkeypatch.setattr(checkpoint_module, "atomic_write", watching_write)
    trainer.run([0], max_epochs=3)
    assert present_during_write == [False, True, True]  # ignite's own DiskSaver would give [False, False, False]


def test_a_failed_write_keeps_the_previous_best_model(tmp_path, monkeypatch):
    trainer, evaluator = scripted_pair([0.5, 0.6])
    attach_best_checkpoint(evaluator, trainer, best_contents(nn.Linear(2, 2), trainer, evaluator), tmp_path)
    real_save = torch.save

    def failing_second_save(obj, f, *args, **kwargs):
        if trainer.state.epoch == 2:
            f.write(b"half a checkpoint")
            raise OSError("disk full")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_second_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.run([0], max_epochs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST_MODEL]  # no temporary file left behind
    assert load_checkpoint(tmp_path / BEST_MODEL)["epoch"] == 1


@pytest.mark.parametrize(
    ("accuracies", "patience", "stop_epoch"),
    [([0.5, 0.6, 0.6, 0.55, 0.7], 2, 4), ([0.5, 0.6, 0.7, 0.8], 1, 4), ([0.9, 0.1, 0.2, 0.3], 3, 4),
     ([0.9, 0.1, 0.2, 0.3, 0.4], 1, 2)],
)
def test_early_stopping_stops_at_the_expected_epoch(accuracies, patience, stop_epoch):
    trainer, evaluator = scripted_pair(accuracies)
    attach_early_stopping(evaluator, trainer, patience)
    trainer.run([0], max_epochs=len(accuracies))
    assert trainer.state.epoch == stop_epoch


def test_early_stopping_is_off_with_patience_zero():
    trainer, evaluator = scripted_pair([0.9, 0.1, 0.1])
    assert attach_early_stopping(evaluator, trainer, 0) is None


@pytest.mark.parametrize(("monitor", "values"), [("train_loss", [1.0, 0.9, 0.9, 0.95, 0.9, 0.9]),
                                                 ("val_loss", [1.0, 0.9, 0.9, 0.95, 0.9, 0.9]),
                                                 ("val_accuracy", [0.5, 0.6, 0.6, 0.55, 0.6, 0.6])])
def test_plateau_lowers_the_lr_after_its_patience(monitor, values):
    trainer, evaluator = Engine(lambda e, b: None), Engine(lambda e, b: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED,
                              lambda e: e.state.metrics.update({EPOCH_LOSS: values[e.state.epoch - 1]}))
    evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(
        {"loss": values[trainer.state.epoch - 1], ACCURACY: values[trainer.state.epoch - 1]}))
    attach_validation(trainer, evaluator, [0])
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    config = TrainConfig(lr_scheduler="plateau", plateau_monitor=monitor, plateau_patience=2, plateau_factor=0.5)
    attach_lr_scheduler(trainer, evaluator, optimizer, config, epoch_length=1)
    lrs = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: lrs.append(e.state.metrics[LR]))
    trainer.run([0], max_epochs=6)
    # best after epoch 2; epochs 3, 4, 5 do not improve; the third bad epoch (> patience) halves the lr
    assert lrs == [1.0] * 5 + [0.5]


def test_cosine_warms_up_then_decays_to_zero_over_the_run():
    trainer, evaluator = Engine(lambda e, b: None), Engine(lambda e, b: None)
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    config = TrainConfig(lr_scheduler="cosine", lr=0.1, warmup_epochs=1, epochs=3)
    attach_lr_scheduler(trainer, evaluator, optimizer, config, epoch_length=4)
    lrs = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: lrs.append(optimizer.param_groups[0]["lr"]))
    trainer.run([0] * 4, max_epochs=3)
    assert len(lrs) == 12
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])  # linear warm-up over one epoch
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:]))  # no restart before the end of the run
    assert 0 < lrs[-1] < 0.005


def test_a_warm_up_of_one_step_is_no_warm_up():
    """One step per epoch and --warmup-epochs 1: ignite refuses a warm-up shorter than 2 steps (a ValueError
    before the run started), and one of a single step would start at lr anyway."""
    trainer, evaluator = Engine(lambda e, b: None), Engine(lambda e, b: None)
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    config = TrainConfig(lr_scheduler="cosine", lr=0.1, warmup_epochs=1, epochs=4)
    attach_lr_scheduler(trainer, evaluator, optimizer, config, epoch_length=1)
    lrs = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: lrs.append(optimizer.param_groups[0]["lr"]))
    trainer.run([0], max_epochs=4)
    assert lrs[0] == 0.1 and len(lrs) == 4 and all(a > b > 0 for a, b in zip(lrs, lrs[1:]))


def scripted_trainer(outputs):
    """A trainer whose step returns outputs[i] = (loss, batch_size) in turn."""
    it = iter(outputs)

    def step(engine, batch):
        loss, n = next(it)
        return {"loss": torch.tensor(loss), "batch_size": n}

    return Engine(step)


def test_epoch_loss_is_the_mean_over_samples_not_batches():
    trainer = scripted_trainer([(2.0, 1), (1.0, 3), (4.0, 2), (0.0, 2)])
    attach_epoch_loss(trainer, torch.device("cpu"))
    losses = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: losses.append(e.state.metrics[EPOCH_LOSS]))
    trainer.run([0, 0], max_epochs=2)
    assert losses == [pytest.approx((2.0 + 3.0) / 4), pytest.approx(8.0 / 4)]


def test_epoch_loss_keeps_its_partial_sums_across_a_mid_epoch_resume():
    first = scripted_trainer([(2.0, 1), (1.0, 3)])
    tracker = attach_epoch_loss(first, torch.device("cpu"))
    first.add_event_handler(Events.ITERATION_COMPLETED(once=2), lambda e: e.terminate())
    first.run([0, 0, 0], max_epochs=1)
    saved_engine, saved_loss = first.state_dict(), tracker.state_dict()
    assert saved_loss == {"sum": 5.0, "count": 4}

    resumed = scripted_trainer([(6.0, 2)])
    resumed_tracker = attach_epoch_loss(resumed, torch.device("cpu"))
    resumed.load_state_dict(saved_engine)
    resumed_tracker.load_state_dict(saved_loss)
    resumed.run([0, 0, 0])
    assert resumed.state.metrics[EPOCH_LOSS] == pytest.approx((5.0 + 12.0) / 6)


def test_a_nan_epoch_loss_stops_training():
    trainer = scripted_trainer([(1.0, 2), (math.inf, 2)])
    attach_epoch_loss(trainer, torch.device("cpu"))
    with pytest.raises(TrainingDiverged, match="the mean training loss of epoch 1 is inf; lower --lr"):
        trainer.run([0, 0], max_epochs=1)


def test_nan_guard_names_the_iteration_where_the_loss_went_bad_and_how_often_it_checks():
    # checked every 4 iterations: the NaN of iteration 2 is detected at iteration 4, but named as iteration 2
    trainer = scripted_trainer([(1.0, 2), (math.nan, 2), (math.inf, 2), (math.nan, 2), (1.0, 2)])
    attach_nan_guard(trainer, every=4)
    with pytest.raises(TrainingDiverged, match=r"the training loss became non-finite at iteration 2 \(epoch 1\); "
                       r"detected at iteration 4: the loss is checked every 4 iterations \(--log-every\)"):
        trainer.run([0] * 5, max_epochs=1)


def test_nan_guard_checks_at_the_end_of_an_epoch_shorter_than_its_interval():
    trainer = scripted_trainer([(1.0, 2), (math.nan, 2), (1.0, 2)])
    attach_nan_guard(trainer, every=10)
    with pytest.raises(TrainingDiverged, match=r"non-finite at iteration 2 \(epoch 1\); detected at iteration 3"):
        trainer.run([0] * 3, max_epochs=2)


def test_data_order_resumes_mid_epoch_with_the_batches_not_yet_seen():
    def record_run(state=None):
        sampler = EpochBatchSampler(20, 4, seed=7)  # 5 batches per epoch
        seen = []
        trainer = Engine(lambda e, batch: seen.append(batch))
        attach_data_order(trainer, sampler)
        if state:
            trainer.load_state_dict(state)
        trainer.run(sampler, max_epochs=3)
        return seen

    uninterrupted = record_run()
    assert len(uninterrupted) == 15 and uninterrupted[:5] != uninterrupted[5:10]
    assert record_run({"iteration": 7, "epoch_length": 5, "max_epochs": 3}) == uninterrupted[7:]
    assert record_run({"iteration": 10, "epoch_length": 5, "max_epochs": 3}) == uninterrupted[10:]


def test_every_seconds_throttles_but_always_fires_on_the_last_iteration(monkeypatch):
    clock = iter([0.0, 0.05, 0.1, 0.25, 0.3, 0.31])
    monkeypatch.setattr("ignite_app.handlers.time.monotonic", lambda: next(clock))
    fired = []
    trainer = Engine(lambda e, b: None)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(event_filter=every_seconds(0.2)),
                              lambda e: fired.append(e.state.iteration))
    trainer.run([0] * 6, max_epochs=1)
    assert fired == [1, 4, 6]
