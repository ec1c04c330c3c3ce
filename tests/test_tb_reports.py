"""The report handlers alone, on real ignite engines, with scripted reports; read back from the event files."""

import copy
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers.tensorboard_logger import TensorboardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_reports import record
from torch import nn

import ignite_app.reporting.tensorboard as tb_reports
from ignite_app.app import build
from ignite_app.config import TrainConfig
from ignite_app.engines import StepOptions, create_trainer
from ignite_app.reporting.eventfiles import purge_events_after
from ignite_app.handlers import BestReport, attach_best_report, attach_validation
from ignite_app.metrics import REPORT, ClassificationReport
from ignite_app.reporting.files import attach_history, attach_report_files
from ignite_app.reporting.writers import HISTORY_CSV, classification_report_csv, confusion_matrix_csv, history_row
from ignite_app.runstate.rundir import RunLock
from ignite_app.runstate.jobs import BackgroundJobs, JobError
from ignite_app.reporting.tensorboard import (
    attach_hparams,
    attach_norm_logging,
    attach_report_logging,
    class_tags,
    hparam_values,
    pending_report_events,
)

NAMES = ("cat", "dog", "big bird")
TAGS = ("cat", "dog", "big_bird")


def scripted_reports(n):
    """n reports over the same 30 samples, with accuracies 0.6, 0.9, 0.8, ...: the best is the second epoch."""
    reports_by_epoch = []
    for correct in [6, 9, 8, 7, 5][:n]:
        counts = np.zeros((3, 3), dtype=np.int64)
        for i in range(3):
            counts[i, i], counts[i, (i + 1) % 3] = correct, 10 - correct
        reports_by_epoch.append(ClassificationReport.from_counts(counts, NAMES))
    return reports_by_epoch


def scripted_pair(reports_by_epoch):
    """A do-nothing trainer whose validation after epoch e publishes reports_by_epoch[e - 1]."""
    trainer, evaluator = Engine(lambda e, b: None), Engine(lambda e, b: None)

    @evaluator.on(Events.COMPLETED)
    def script(engine):
        report = reports_by_epoch[trainer.state.epoch - 1]
        engine.state.metrics.update({REPORT: report, **report.scalars()})

    attach_validation(trainer, evaluator, [0])
    return trainer, evaluator


def read_events(folder):
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_jobs_run_in_order_on_one_other_thread():
    jobs, seen = BackgroundJobs(), []
    for i in range(5):
        jobs.submit(f"job {i}", lambda i=i: seen.append((i, threading.current_thread().name)))
    jobs.close()
    assert [i for i, _ in seen] == list(range(5))
    assert {name for _, name in seen} == {"ignite_app-reports_0"}
    jobs.close()  # idempotent


@pytest.mark.parametrize("synchronous", [False, True])
def test_a_failed_job_is_raised_in_the_caller_with_its_cause(synchronous):
    jobs = BackgroundJobs(synchronous=synchronous)
    with pytest.raises(JobError, match="drawing epoch 2 failed: ZeroDivisionError: division by zero") as info:
        jobs.submit("drawing epoch 2", lambda: 1 / 0)
        jobs.wait()
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    jobs.close()


def test_a_failure_surfaces_at_the_next_submit_once_the_job_has_finished():
    jobs = BackgroundJobs()
    jobs.submit("drawing epoch 1", lambda: 1 / 0)
    while jobs._pending and not jobs._pending[0][1].done():
        time.sleep(0.01)
    with pytest.raises(JobError, match="drawing epoch 1 failed"):
        jobs.submit("drawing epoch 2", lambda: None)
    jobs.close()


def test_class_tags_replace_slashes_and_spaces_and_keep_tags_distinct():
    assert class_tags(["cat", "a/b", "big  bird", "a_b", "é+ü"]) == ["cat", "a_b", "big__bird", "a_b_3", "é+ü"]


@pytest.fixture
def tb(tmp_path):
    logger = TensorboardLogger(log_dir=str(tmp_path))
    yield logger
    logger.close()


def run_report_logging(tb, reports_by_epoch, jobs=None):
    trainer, evaluator = scripted_pair(reports_by_epoch)
    jobs = jobs or BackgroundJobs()
    logger = attach_report_logging(evaluator, trainer, tb, NAMES, jobs)
    stamps = []
    evaluator.add_event_handler(Events.COMPLETED, lambda _: stamps.append(time.time()))
    trainer.run([0], max_epochs=len(reports_by_epoch))
    jobs.close()
    tb.writer.flush()
    return logger, stamps


def test_each_validation_writes_images_text_and_per_class_scalars_at_its_epoch(tb, tmp_path):
    reports_by_epoch = scripted_reports(3)
    run_report_logging(tb, reports_by_epoch)
    events = read_events(tmp_path)
    tags = events.Tags()
    assert sorted(tags["images"]) == ["val/confusion_matrix", "val/confusion_matrix_normalized"]
    assert tags["tensors"] == ["val/classification_report"]
    per_class = (f"val_per_class/{t}/{s}" for t in TAGS for s in ("precision", "recall", "f1"))
    assert sorted(tags["scalars"]) == sorted(per_class)
    for tag in tags["images"]:
        assert [e.step for e in events.Images(tag)] == [1, 2, 3]
    texts = events.Tensors("val/classification_report")
    assert [e.step for e in texts] == [1, 2, 3]
    assert "| big bird |" in texts[1].tensor_proto.string_val[0].decode()
    for epoch, report in enumerate(reports_by_epoch, start=1):
        recall = events.Scalars("val_per_class/big_bird/recall")[epoch - 1]
        assert recall.step == epoch and recall.value == pytest.approx(report.per_class.loc["big bird", "recall"])


def test_reports_are_stamped_with_the_validation_time_not_the_drawing_time(tb, tmp_path, monkeypatch):
    real = tb_reports.heatmap_png

    def slow_heatmap(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(tb_reports, "heatmap_png", slow_heatmap)
    _, stamps = run_report_logging(tb, scripted_reports(2))
    events = read_events(tmp_path)
    for tag in ("val/confusion_matrix", "val/confusion_matrix_normalized", "val/classification_report",
                "val_per_class/cat/f1"):
        items = events.Images(tag) if "confusion" in tag else events.Tensors(tag) if "report" in tag else \
            events.Scalars(tag)
        for item, stamp in zip(items, stamps):
            assert item.wall_time <= stamp  # taken before the (slow) drawing, which ended 0.6 s later


def test_a_resumed_logger_replaces_the_last_validation_with_the_same_events(tmp_path):
    first = TensorboardLogger(log_dir=str(tmp_path))
    logger, _ = run_report_logging(first, scripted_reports(2))
    first.close()
    state = copy.deepcopy(logger.state_dict())
    assert state["epoch"] == 2 and torch.equal(state["counts"], torch.from_numpy(scripted_reports(2)[1].counts.copy()))
    before = read_events(tmp_path)

    # a resumed process: drop epoch 2's report events (maybe written, maybe not), then write them again
    assert purge_events_after(tmp_path, float("inf"), also=pending_report_events({"report_logging": state})) == 12
    resumed = TensorboardLogger(log_dir=str(tmp_path))
    trainer, evaluator, jobs = Engine(lambda e, b: None), Engine(lambda e, b: None), BackgroundJobs()
    attach_report_logging(evaluator, trainer, resumed, NAMES, jobs).load_state_dict(state)
    trainer.run([0], max_epochs=1)  # STARTED replays; no validation here
    jobs.close()
    resumed.close()
    after = read_events(tmp_path)
    # Sorted by step: the reader takes the files in name order, and the two writers' names (time in seconds, then
    # pid, then a per-process counter, as text) may sort either way within one second.
    for tag in ("val/confusion_matrix", "val/confusion_matrix_normalized"):
        assert sorted((e.step, e.wall_time, e.encoded_image_string) for e in after.Images(tag)) == \
               sorted((e.step, e.wall_time, e.encoded_image_string) for e in before.Images(tag))
    assert sorted((e.step, e.wall_time, e.value) for e in after.Scalars("val_per_class/dog/precision")) == \
           sorted((e.step, e.wall_time, e.value) for e in before.Scalars("val_per_class/dog/precision"))
    assert pending_report_events({}) is None and pending_report_events({"report_logging": {}}) is None


def test_report_files_follow_the_best_epoch(tmp_path):
    reports_by_epoch = scripted_reports(3)  # the best is epoch 2
    trainer, evaluator = scripted_pair(reports_by_epoch)
    best = attach_best_report(evaluator, trainer, NAMES)
    jobs = BackgroundJobs()
    folder = tmp_path / "reports"
    attach_report_files(evaluator, trainer, best, folder, jobs)
    trainer.run([0], max_epochs=3)
    jobs.close()
    assert best.epoch == 2
    assert (folder / "confusion_matrix.csv").read_text() == confusion_matrix_csv(reports_by_epoch[1])
    assert (folder / "classification_report.csv").read_text() == classification_report_csv(reports_by_epoch[1])
    assert (folder / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(folder.glob(".*.tmp"))


def test_report_files_are_rewritten_from_the_restored_best_report_when_a_run_starts(tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "confusion_matrix.csv").write_text("written by a process killed before its checkpoint\n")
    best = BestReport(NAMES)
    counts = torch.from_numpy(scripted_reports(1)[0].counts.copy())
    best.load_state_dict({"accuracy": 0.6, "epoch": 4, "counts": counts, "metric": "accuracy", "value": 0.6,
                          "scores": None, "top5_accuracy": None})
    trainer, jobs = Engine(lambda e, b: None), BackgroundJobs()
    attach_report_files(Engine(lambda e, b: None), trainer, best, folder, jobs)
    trainer.run([0], max_epochs=1)
    jobs.close()
    assert (folder / "confusion_matrix.csv").read_text() == confusion_matrix_csv(best.report)

    empty = BestReport(NAMES)  # resumed from a checkpoint taken before the first validation
    trainer, jobs = Engine(lambda e, b: None), BackgroundJobs()
    attach_report_files(Engine(lambda e, b: None), trainer, empty, folder, jobs)
    trainer.run([0], max_epochs=1)
    assert list(folder.iterdir()) == []


class Summary:
    """Stands in for EpochSummary: one record per epoch."""

    def __init__(self):
        self.records = []

    def __call__(self, engine):
        self.records.append(record(engine.state.epoch, seconds=0.5))


def test_history_has_one_row_per_epoch_and_a_resume_continues_it(tmp_path):
    trainer, summary = Engine(lambda e, b: None), Summary()
    trainer.add_event_handler(Events.EPOCH_COMPLETED, summary)
    attach_history(trainer, summary, tmp_path)
    trainer.run([0, 0], max_epochs=3)
    path = tmp_path / HISTORY_CSV
    assert [line.split(",")[0] for line in path.read_text().splitlines()] == ["epoch", "1", "2", "3"]

    # the process was killed after writing epoch 3 but before its checkpoint: resume from epoch 2's
    trainer, summary = Engine(lambda e, b: None), Summary()
    trainer.add_event_handler(Events.EPOCH_COMPLETED, summary)
    attach_history(trainer, summary, tmp_path)
    trainer.load_state_dict({"iteration": 4, "epoch_length": 2, "max_epochs": 4})
    trainer.run([0, 0], max_epochs=4)
    lines = path.read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["epoch", "1", "2", "3", "4"]
    assert lines[3] == ",".join(history_row(record(3, seconds=0.5)))


def test_hparam_values_keep_each_options_type_stable_across_runs():
    values = hparam_values(TrainConfig(epoch_length=5, run_name="x", output_dir=Path("out")))
    assert values["lr"] == 3e-3 and values["epochs"] == 30 and values["amp"] is False
    assert values["epoch_length"] == "5" and values["checkpoint_every"] == "none"  # optional: always text
    assert values["output_dir"] == "out" and values["run_name"] == "x" and values["model"] == "cnn"
    assert set(values) == set(TrainConfig().to_dict())


def test_hparams_go_into_the_runs_own_event_file_when_the_run_completes(tb, tmp_path):
    reports_by_epoch = scripted_reports(3)
    trainer, evaluator = scripted_pair(reports_by_epoch)
    best = attach_best_report(evaluator, trainer, NAMES)
    attach_hparams(trainer, tb, TrainConfig(), best)
    trainer.run([0], max_epochs=3)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == []  # no sub-run folder
    events = read_events(tmp_path)
    assert set(events.PluginTagToContent("hparams")) == {"_hparams_/experiment", "_hparams_/session_start_info",
                                                         "_hparams_/session_end_info"}
    [point] = events.Scalars("hparam/best_accuracy")
    assert point.step == 3 and point.value == pytest.approx(reports_by_epoch[1].accuracy)


def test_hparams_are_not_written_when_a_run_is_interrupted(tb, tmp_path):
    trainer, evaluator = scripted_pair(scripted_reports(3))
    best = attach_best_report(evaluator, trainer, NAMES)
    attach_hparams(trainer, tb, TrainConfig(), best)
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=2), lambda e: e.terminate(skip_completed=True))
    trainer.run([0], max_epochs=3)
    tb.writer.flush()
    events = read_events(tmp_path)
    assert "hparam/best_accuracy" not in events.Tags()["scalars"]
    with pytest.raises(KeyError, match="Plugin 'hparams' could not be found"):
        events.PluginTagToContent("hparams")


def test_norm_logging_writes_this_steps_gradient_and_the_updated_weights(tb, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(torch.randn(8, 4), torch.randint(2, (8,))) for _ in range(3)]
    trainer = create_trainer(model, optimizer, nn.CrossEntropyLoss(), StepOptions(torch.device("cpu")))
    attach_norm_logging(trainer, tb, model, weights_every=3, grads_every=1)
    trainer.run(batches, max_epochs=1)
    tb.writer.flush()
    events = read_events(tmp_path)
    assert {t.split("/")[0] for t in events.Tags()["scalars"]} == {"weights_norm", "grads_norm"}
    # the gradient of step 1 computed independently
    x, y = batches[0]
    nn.CrossEntropyLoss()(reference(x), y).backward()
    grad_points = events.Scalars("grads_norm/2/weight")
    assert [p.step for p in grad_points] == [1, 2, 3]
    assert grad_points[0].value == pytest.approx(float(reference[2].weight.grad.norm()), rel=1e-6)
    [weight_point] = events.Scalars("weights_norm/0/bias")
    assert weight_point.step == 3
    assert weight_point.value == pytest.approx(float(model[0].bias.detach().norm()), rel=1e-6)


def test_norm_logging_is_off_by_default(tb):
    assert attach_norm_logging(Engine(lambda e, b: None), tb, nn.Linear(2, 2), None, None) == []


def test_a_failing_drawing_stops_the_run_at_the_next_validation(tb, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no font")

    monkeypatch.setattr(tb_reports, "heatmap_png", broken)
    trainer, evaluator = scripted_pair(scripted_reports(3))
    attach_report_logging(evaluator, trainer, tb, NAMES, BackgroundJobs())
    with pytest.raises(JobError, match="logging the validation report of epoch 1 to TensorBoard failed: "
                                          "RuntimeError: no font"):
        trainer.run([0], max_epochs=3)
    assert trainer.state.epoch == 2  # raised when epoch 2's validation waited for epoch 1's drawing



def test_a_run_whose_last_drawing_fails_raises_when_it_closes_and_still_closes_its_files(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no font")

    monkeypatch.setattr(tb_reports, "heatmap_png", broken)
    app = build(TrainConfig(epochs=1, epoch_length=2, output_dir=tmp_path, run_name="run", progress=False))
    with pytest.raises(JobError, match="validation report of epoch 1 to TensorBoard failed: RuntimeError"):
        app.run()
    RunLock(app.paths).release()  # the folder was released: taking the lock again works
    assert app.handlers.tb_logger.writer.file_writer is None  # SummaryWriter.close() ran
