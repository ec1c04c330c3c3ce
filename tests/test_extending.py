"""The three ways to extend the app: Python API, --handler plugins, app events; and every example runs."""

import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ignite_app
from ignite_app import AppEvents, TrainConfig, build
from ignite_app.cli import train as cli
from ignite_app.runstate.checkpoint import load_checkpoint
from ignite_app.errors import UsageError
from ignite_app.plugins import load_plugin

TINY = ["--epochs", "3", "--epoch-length", "3", "--no-progress", "--log-every", "1"]


def run_example(name, tmp_path, *extra):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py"), *TINY, "--output-dir",
                             str(tmp_path), "--run-name", "run", *extra], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def event_data(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_public_api_exports_resolve():
    for name in ignite_app.__all__:
        assert getattr(ignite_app, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        ignite_app.nope  # noqa: B018


def test_app_events_fire_with_the_documented_state(tmp_path):
    app = build(TrainConfig(epochs=3, epoch_length=3, output_dir=tmp_path, run_name="run", progress=False))
    validations, bests = [], []

    @app.trainer.on(AppEvents.VALIDATION_COMPLETED)
    def on_validation(trainer):
        report = trainer.state.val_report
        assert report.accuracy == app.evaluator.state.metrics["accuracy"]
        assert set(trainer.state.val_metrics) == {"loss", "accuracy", "precision_macro", "recall_macro", "f1_macro",
                                                  "ap_macro", "roc_auc_macro", "ece", "top5_accuracy"}  # 10 classes
        validations.append((trainer.state.epoch, report.accuracy))

    @app.trainer.on(AppEvents.BEST_MODEL_SAVED)
    def on_best(trainer):
        best = trainer.state.best_model
        on_disk = load_checkpoint(best.path)  # already written when the event fires
        assert (on_disk["epoch"], on_disk["best_acc"]) == (best.epoch, best.accuracy)
        bests.append((best.epoch, best.accuracy))

    app.run()
    assert [epoch for epoch, _ in validations] == [1, 2, 3]
    record, expected = -1.0, []
    for epoch, accuracy in validations:  # a new best whenever accuracy beats every earlier epoch
        if accuracy > record:
            record = accuracy
            expected.append((epoch, accuracy))
    assert bests == expected


def test_the_python_api_example(tmp_path):
    out = run_example("python_api", tmp_path).stdout
    assert "epoch 2: worst class" in out and "epoch 1: worst class" not in out  # every=2
    assert "new best model at epoch 1:" in out
    assert "done: best accuracy" in out


def update_ratios(run_dir):
    events = event_data(run_dir)
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"] if tag.startswith("update_ratio/")}


def test_a_handler_plugin_from_the_command_line(tmp_path):
    result = run_script("train.py", *TINY, "--output-dir", tmp_path, "--run-name", "run", "--handler",
                        ROOT / "examples" / "update_ratio.py:attach")
    assert result.returncode == 0, result.stderr
    ratios = update_ratios(tmp_path / "run")
    # every parameter of the cnn: 4 conv weights, 4 batch norms x (weight, bias), the head's weight and bias
    assert "update_ratio/network/0/weight" in ratios and len(ratios) == 14
    assert all([e.step for e in points] == [5] for points in ratios.values())  # every 5 iterations out of 9
    assert all(0 < e.value < 1 for points in ratios.values() for e in points)


def test_the_update_ratio_example(tmp_path):
    run_example("update_ratio", tmp_path, "--every", "2")
    ratios = update_ratios(tmp_path / "run")
    assert [e.step for e in ratios["update_ratio/network/0/weight"]] == [2, 4, 6, 8]


def test_the_early_stopping_on_f1_example_stops_where_the_f1_curve_says(tmp_path):
    out = run_example("early_stopping_f1", tmp_path, "--patience", "1", "--epochs", "8", "--lr", "1e-5").stdout
    f1 = [e.value for e in event_data(tmp_path / "run").Scalars("val/f1_macro")]
    best, bad, expected_stop = -1.0, 0, 8
    for epoch, value in enumerate(f1, start=1):  # ignite's rule: stop after `patience` non-improving epochs
        if value > best:
            best, bad = value, 0
        else:
            bad += 1
            if bad >= 1:
                expected_stop = epoch
                break
    assert len(f1) == expected_stop and f"stopped after epoch {expected_stop}" in out


def test_the_time_limit_example_stops_on_time(tmp_path):
    out = run_example("time_limit", tmp_path, "--seconds", "1", "--epochs", "1000").stdout
    stopped = int(out.rsplit("stopped after epoch ", 1)[1].split()[0])
    assert 1 <= stopped < 1000
    assert (tmp_path / "run" / "checkpoints" / f"training_{3 * stopped}.pt").is_file()  # resumable


def test_the_worst_images_example(tmp_path):
    run_example("worst_images", tmp_path, "--count", "4")
    events = event_data(tmp_path / "run")
    images = events.Images("val/worst_images")
    assert [e.step for e in images] == [1, 2, 3]
    assert (images[0].width, images[0].height) == (4 * 64, 64)  # a row of 4 images, scaled up from 8x8
    assert "val/worst_images/text_summary" in events.Tags()["tensors"]


def write(tmp_path, name, code):
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("no_colon_here", "expected FILE.py:FUNCTION or package.module:FUNCTION"),
        ("missing.py:attach", r"file missing.py does not exist"),
        ("no_such_module_xyz:attach", r"no module named 'no_such_module_xyz'"),
        ("json:attach", r"json has no 'attach'; it defines:"),
        ("json:__doc__", r"json.__doc__ is a str, not a function"),
        ("json.decoder:JSONDecoder", r"JSONDecoder.* must accept exactly one argument, the App"),
    ],
)
def test_plugin_spec_errors_say_which_part_is_wrong(spec, match):
    with pytest.raises(UsageError, match=match):
        load_plugin(spec)


def test_plugin_file_errors(tmp_path):
    broken = write(tmp_path, "broken.py", "raise RuntimeError('boom')\n")
    with pytest.raises(UsageError, match=r"importing .*broken.py failed: RuntimeError: boom"):
        load_plugin(f"{broken}:attach")
    two_args = write(tmp_path, "two.py", "def attach(app, other):\n    pass\ndef helper():\n    pass\n")
    with pytest.raises(UsageError, match=r"attach\(app, other\) must accept exactly one argument, the App"):
        load_plugin(f"{two_args}:attach")
    with pytest.raises(UsageError, match=r"has no 'setup'; it defines: attach, helper"):
        load_plugin(f"{two_args}:setup")
    fine = write(tmp_path, "fine.py", "def attach(app, every=2):\n    app.touched = every\n")
    plugin = load_plugin(f"{fine}:attach")
    assert plugin(type("App", (), {})()) is None


def test_a_bad_handler_exits_2_before_anything_is_built(tmp_path):
    result = run_script("train.py", "--handler", "nowhere.py:attach", "--output-dir", tmp_path)
    assert result.returncode == 2
    assert "--handler 'nowhere.py:attach': file nowhere.py does not exist" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_plugins_are_attached_after_the_built_in_handlers(tmp_path):
    plugin = write(tmp_path, "order.py", """
        from ignite.engine import Events

        def attach(app):
            @app.trainer.on(Events.EPOCH_COMPLETED)
            def check(trainer):
                # the built-in epoch handlers (summary, training checkpoint) have run already
                assert app.handlers.summary.records[-1].epoch == trainer.state.epoch
                app.seen = trainer.state.epoch
        """)
    app = build(TrainConfig(epochs=1, epoch_length=2, output_dir=tmp_path, run_name="run", progress=False,
                            handlers=(f"{plugin}:attach",)))
    app.run()
    assert app.seen == 1


def test_a_plugin_that_fails_to_attach_is_named_logged_and_leaves_nothing_that_blocks_a_retry(tmp_path, capsys):
    plugin = write(tmp_path, "flaky.py", """
        def attach(app):
            raise KeyError("no such metric")
        """)
    args = [*TINY, "--output-dir", str(tmp_path / "out"), "--run-name", "run", "--handler", f"{plugin}:attach"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert (f"--handler '{plugin}:attach' failed while attaching its handlers ({plugin} line 3): KeyError: "
            "'no such metric'") in err
    log = (tmp_path / "out" / "run" / "train.log").read_text()
    assert "the run could not start: --handler" in log and "KeyError: 'no such metric'" in log
    assert 'raise KeyError("no such metric")' in log  # the plugin's traceback is kept there

    plugin.write_text("def attach(app):\n    pass\n")  # fixed: the same command now runs in the same folder
    retry = run_script("train.py", *args)
    assert retry.returncode == 0, retry.stderr
    assert "exists and holds no results yet (an earlier start stopped before training)" in retry.stdout
    assert (tmp_path / "out" / "run" / "checkpoints" / "training_9.pt").is_file()


def test_a_new_run_that_fails_to_start_leaves_no_folder_behind(tmp_path):
    plugin = write(tmp_path, "flaky.py", "def attach(app):\n    raise ValueError('nope')\n")
    assert cli.main([*TINY, "--output-dir", str(tmp_path / "out"), "--handler", f"{plugin}:attach"]) == 2
    assert list((tmp_path / "out").iterdir()) == []  # without --run-name, the same command makes a new folder


def test_an_error_inside_a_plugin_event_is_named_logged_and_the_resume_command_printed(tmp_path):
    plugin = write(tmp_path, "buggy.py", """
        from ignite.engine import Events

        def attach(app):
            @app.trainer.on(Events.ITERATION_COMPLETED(once=5))
            def divide(trainer):
                return 1 / 0
        """)
    result = run_script("train.py", *TINY, "--output-dir", tmp_path, "--run-name", "run", "--handler",
                        f"{plugin}:attach")
    assert result.returncode == 1
    headline = (f"training stopped by an error in --handler '{plugin}:attach' ({plugin} line 7): ZeroDivisionError: "
                "division by zero")
    assert headline in result.stdout
    log = (tmp_path / "run" / "train.log").read_text()
    assert headline in log and "Traceback (most recent call last)" in log and "return 1 / 0" in log
    assert "continue the run from its last checkpoint with: python scripts/train.py" in result.stdout
    assert "--resume auto --run-name run" in log
