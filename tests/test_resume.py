"""Crash, kill and interrupt real training processes, then resume: the result must equal an uninterrupted run."""

import csv
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ignite_app.runstate.checkpoint import load_checkpoint, training_checkpoints
from ignite_app.reporting.writers import HISTORY_CSV, REPORT_FILES
from ignite_app.runstate.rundir import RunLock, RunPaths

# 3 epochs of 6 iterations; mid-epoch checkpoints at iterations 4, 8 and 16, epoch checkpoints at 6, 12 and 18; the
# best model chosen by mAP, with PR curves and confident mistakes in TensorBoard: each must appear exactly once
ARGS = ["--epochs", "3", "--epoch-length", "6", "--checkpoint-every", "4", "--log-every", "2", "--no-progress",
        "--seed", "1", "--best-metric", "ap_macro", "--pr-curves", "2", "--log-mistakes", "3"]
FINAL = "training_18.pt"


def train(output_dir, *extra, env=None):
    return run_script("train.py", *ARGS, "--output-dir", output_dir, *extra, env=env)


def crash(output_dir, point, *extra, signal_name="SIGKILL"):
    env = {**os.environ, "CRASH_AT": point, "CRASH_SIGNAL": signal_name}
    return subprocess.run([sys.executable, str(ROOT / "tests" / "crash_run.py"), *ARGS, "--output-dir",
                           str(output_dir), "--run-name", "run", *extra], env=env, capture_output=True, text=True,
                          timeout=300)


def scalars(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def images_and_texts(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    return ({tag: [(e.step, e.encoded_image_string) for e in events.Images(tag)] for tag in tags["images"]},
            {tag: [(e.step, e.tensor_proto.SerializeToString()) for e in events.Tensors(tag)]  # texts, PR curves
             for tag in tags["tensors"]})


def report_files(run_dir):
    """The best epoch's report files, and history.csv without its wall-clock column."""
    folder = run_dir / "reports"
    with open(folder / HISTORY_CSV, newline="") as f:
        history = [row[:-1] for row in csv.reader(f)]
    return {name: (folder / name).read_bytes() for name in REPORT_FILES}, history


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    result = train(out, "--run-name", "run")
    assert result.returncode == 0, result.stderr
    return out / "run"


def assert_same_run(run_dir, reference):
    """Same final weights (bit for bit), same best model, same best report, same TensorBoard curves."""
    ours = load_checkpoint(run_dir / "checkpoints" / FINAL)
    theirs = load_checkpoint(reference / "checkpoints" / FINAL)
    for name, tensor in theirs["model"].items():
        assert torch.equal(ours["model"][name], tensor), name
    assert ours["best_report"]["accuracy"] == theirs["best_report"]["accuracy"]
    assert ours["best_report"]["epoch"] == theirs["best_report"]["epoch"]
    assert torch.equal(ours["best_report"]["counts"], theirs["best_report"]["counts"])
    best, best_ref = (load_checkpoint(d / "checkpoints" / "best_model.pt") for d in (run_dir, reference))
    assert (best["epoch"], best["best_acc"]) == (best_ref["epoch"], best_ref["best_acc"])
    assert best["best_metric"] == best_ref["best_metric"] and best["best_metric"]["name"] == "ap_macro"
    assert all(torch.equal(best["state_dict"][k], v) for k, v in best_ref["state_dict"].items())
    assert scalars(run_dir) == scalars(reference)  # no duplicated or zig-zag points
    assert images_and_texts(run_dir) == images_and_texts(reference)  # every epoch's report exactly once
    assert report_files(run_dir) == report_files(reference)


def visible_checkpoints_load(run_dir):
    for path in [*training_checkpoints(run_dir / "checkpoints"), run_dir / "checkpoints" / "best_model.pt"]:
        if path.exists():
            load_checkpoint(path)  # raises if a half-written file were visible under its final name


@pytest.mark.parametrize("point", ["iteration:3", "iteration:10", "validation:2", "after_best:1",
                                   "write:training_12.pt", "write:best_model.pt"])
def test_kill_9_then_resume_equals_the_uninterrupted_run(tmp_path, reference, point):
    result = crash(tmp_path, point)
    assert result.returncode == -signal.SIGKILL, result.stderr
    run_dir = tmp_path / "run"
    visible_checkpoints_load(run_dir)
    resumed = train(tmp_path, "--run-name", "run", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert not list((run_dir / "checkpoints").glob(".*.tmp")), "the killed write's temporary file was not cleared"
    assert_same_run(run_dir, reference)


def test_the_kill_inside_a_write_leaves_the_previous_files_intact(tmp_path):
    result = crash(tmp_path, "write:training_12.pt")
    assert result.returncode == -signal.SIGKILL
    files = [p.name for p in training_checkpoints(tmp_path / "run" / "checkpoints")]
    assert files == ["training_8.pt", "training_6.pt"]  # the newest complete ones; 12 exists only as a temp
    assert len(list((tmp_path / "run" / "checkpoints").glob(".training_12.pt.*.tmp"))) == 1


@pytest.mark.parametrize(("signal_name", "exit_code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_stop_signal_saves_a_checkpoint_and_resume_continues_exactly(tmp_path, reference, signal_name,
                                                                       exit_code):
    result = crash(tmp_path, "iteration:9", signal_name=signal_name)
    assert result.returncode == exit_code, result.stderr
    # the signal lands while iteration 9 completes; the loop notices it after the next iteration
    assert f"stopped by {signal_name} at iteration 10 after saving a checkpoint" in result.stdout + result.stderr
    assert "--resume auto --run-name run" in result.stdout + result.stderr
    assert training_checkpoints(tmp_path / "run" / "checkpoints")[0].name == "training_10.pt"
    resumed = train(tmp_path, "--run-name", "run", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path / "run", reference)


def test_sigterm_from_outside_stops_a_running_process_cleanly(tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), "--epochs", "50",
                             "--output-dir", str(tmp_path), "--run-name", "run", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # synchronise on the first epoch's summary line, not on a sleep
        if line.split("|")[0].split() == ["epoch", "1/50"]:
            break
    proc.send_signal(signal.SIGTERM)
    output = proc.stdout.read()
    assert proc.wait(timeout=120) == 143, output
    newest = load_checkpoint(training_checkpoints(tmp_path / "run" / "checkpoints")[0])
    assert 23 <= newest["trainer"]["iteration"] < 50 * 23


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference):
    assert crash(tmp_path, "iteration:10").returncode == -signal.SIGKILL
    newest = tmp_path / "run" / "checkpoints" / "training_8.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # the disk lost the end of the file
    resumed = train(tmp_path, "--run-name", "run", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint {newest} is truncated or corrupt" in resumed.stdout + resumed.stderr
    assert "falling back to the previous checkpoint" in resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout and "training_6.pt" in resumed.stdout
    assert_same_run(tmp_path / "run", reference)


@pytest.fixture
def finished(tmp_path, reference):
    """A copy of the finished reference run."""
    shutil.copytree(reference, tmp_path / "run")
    return tmp_path / "run"


def test_resuming_a_finished_run_says_so_and_fails(finished):
    before = sorted(p.name for p in finished.rglob("*"))
    result = train(finished.parent, "--run-name", "run", "--resume", "auto")
    assert result.returncode == 2
    assert "run 'run' is complete: it trained 3 epochs (--epochs 3); pass a larger --epochs" in result.stderr
    assert sorted(p.name for p in finished.rglob("*")) == before


def test_a_larger_epochs_continues_a_finished_run(finished):
    result = run_script("train.py", *ARGS[2:], "--epochs", "4", "--output-dir", finished.parent, "--run-name",
                        "run", "--resume", "auto")
    assert result.returncode == 0, result.stderr
    assert "epoch 4/4" in result.stdout and "epoch 3/4" not in result.stdout
    assert scalars(finished)["val/accuracy"][-1][0] == 4 and len(scalars(finished)["val/accuracy"]) == 4


def test_an_incompatible_checkpoint_is_refused_with_the_differences(finished):
    checkpoint = finished / "checkpoints" / FINAL
    result = run_script("train.py", *ARGS, "--epochs", "5", "--model", "mlp", "--lr", "0.01", "--resume", checkpoint)
    assert result.returncode == 2
    assert f"checkpoint {checkpoint} comes from an incompatible run; these differ (checkpoint -> now):" in result.stderr
    assert "--model: 'cnn' -> 'mlp'" in result.stderr and "--lr: 0.003 -> 0.01" in result.stderr


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_carrying_code_is_refused_and_nothing_runs(finished, tmp_path):
    marker = tmp_path / "pwned"
    evil = finished / "checkpoints" / "training_99.pt"
    torch.save({"trainer": {"iteration": 1}, "payload": Payload(marker)}, evil)
    snapshot = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    refusal = f"checkpoint {evil} refused: it carries code (GLOBAL posix.system: pickled objects that would run"
    result = run_script("train.py", *ARGS, "--epochs", "5", "--output-dir", finished.parent, "--run-name", "run",
                        "--resume", evil)
    assert result.returncode == 2 and refusal in result.stderr
    # auto passes over it like any unusable file, with its reason, and takes the newest usable one (the run is
    # complete: nothing runs)
    result = run_script("train.py", *ARGS, "--output-dir", finished.parent, "--run-name", "run", "--resume", "auto")
    assert result.returncode == 2 and refusal in result.stdout and "falling back to the previous" in result.stdout
    assert "run 'run' is complete" in result.stderr
    assert not marker.exists()
    assert {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()} == snapshot


def test_a_run_folder_in_use_is_refused(finished):
    lock = RunLock(RunPaths(finished))
    try:
        result = train(finished.parent, "--epochs", "5", "--run-name", "run", "--resume", "auto")
    finally:
        lock.release()
    assert result.returncode == 2
    assert f"run folder {finished} is in use by another training process (pid {os.getpid()})" in result.stderr


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_resume_auto_without_a_usable_checkpoint_never_restarts_a_run_that_has_results(finished, damage):
    for path in training_checkpoints(finished / "checkpoints"):
        if damage == "delete":
            path.unlink()
        else:
            path.write_bytes(path.read_bytes()[:500])
    before = snapshot(finished)
    result = run_script("train.py", "--epochs", "3", "--no-progress", "--model", "mlp", "--lr", "0.5",
                        "--output-dir", finished.parent, "--run-name", "run", "--resume", "auto")
    assert result.returncode == 2, result.stdout
    assert f"--resume auto: run folder {finished} cannot be resumed" in result.stderr
    if damage == "truncate":
        assert "training_18.pt is truncated or corrupt" in result.stderr
    else:
        assert "it holds no training checkpoint (checkpoints/training_<iteration>.pt)" in result.stderr
    assert "checkpoints/best_model.pt" in result.stderr and "reports/history.csv (3 epochs)" in result.stderr
    assert "nothing was changed; start a new run with another --run-name" in result.stderr
    assert snapshot(finished) == before  # not a TensorBoard point, not a byte of config.json or history.csv


def test_a_best_model_is_refused_as_a_resume_point_with_the_checkpoints_to_use(finished):
    best = finished / "checkpoints" / "best_model.pt"
    result = run_script("train.py", *ARGS, "--epochs", "4", "--resume", best)
    assert result.returncode == 2, result.stderr
    assert (f"--resume {best}: this is the best model, which is for evaluation (scripts/evaluate.py) and "
            "fine-tuning, not for resuming a run; resume from one of the run's training checkpoints "
            "(training_18.pt, training_16.pt in") in result.stderr


def test_resume_from_a_path_needs_no_config_json(finished):
    (finished / "config.json").unlink()  # the checkpoint carries the config
    result = run_script("train.py", *ARGS, "--epochs", "4", "--resume", finished / "checkpoints" / FINAL)
    assert result.returncode == 0, result.stderr
    assert "epoch 4/4" in result.stdout and (finished / "config.json").is_file()


def test_keep_last_counts_the_checkpoints_of_every_process_of_the_run(finished):
    # the first process kept training_16 and training_18; a resumed process writes 24 (epoch 4) and must prune them
    result = run_script("train.py", *ARGS, "--epochs", "4", "--keep-last", "1", "--output-dir", finished.parent,
                        "--run-name", "run", "--resume", "auto")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in training_checkpoints(finished / "checkpoints")] == ["training_24.pt"]


def test_a_checkpoint_a_handler_stops_at_mid_epoch_resumes_to_the_uninterrupted_run(tmp_path, reference):
    plugin = tmp_path / "stop.py"
    plugin.write_text("from ignite.engine import Events\n\n"
                      "def attach(app):\n"
                      "    app.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=9),\n"
                      "                                  lambda trainer: trainer.terminate())\n")
    result = train(tmp_path, "--run-name", "run", "--handler", f"{plugin}:attach")
    assert result.returncode == 0, result.stderr
    assert "a handler stopped the run at iteration 9 (epoch 2 of 3) after saving a checkpoint there" in result.stdout
    assert "--resume auto --run-name run" in result.stdout
    assert "best epoch" not in result.stdout  # no final report as if the run had finished
    assert training_checkpoints(tmp_path / "run" / "checkpoints")[0].name == "training_9.pt"
    resumed = train(tmp_path, "--run-name", "run", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path / "run", reference)


def signal_plugin(tmp_path, body):
    plugin = tmp_path / "signals_plugin.py"
    plugin.write_text("import os\nimport signal\n\nfrom ignite.engine import Events\n\n\ndef attach(app):\n"
                      "    @app.trainer.on(Events.ITERATION_COMPLETED(once=3))\n    def send(trainer):\n"
                      f"        {body}\n")
    return f"{plugin}:attach"


def test_a_second_sigterm_stops_at_once_with_its_exit_code_and_no_traceback(tmp_path):
    spec = signal_plugin(tmp_path, "os.kill(os.getpid(), signal.SIGTERM); os.kill(os.getpid(), signal.SIGTERM)")
    result = train(tmp_path, "--run-name", "run", "--handler", spec)
    assert result.returncode == 143, result.stderr
    assert "stopped at once by a second SIGTERM; continue it with:" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_one_ctrl_c_with_loader_workers_is_reported_once(tmp_path):
    # Ctrl-C reaches the whole process group, data-loading workers included: only the trainer may react
    spec = signal_plugin(tmp_path, "os.killpg(os.getpgrp(), signal.SIGINT)")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *ARGS, "--num-workers", "2",
                             "--output-dir", str(tmp_path), "--run-name", "run", "--handler", spec],
                            capture_output=True, text=True, timeout=300, start_new_session=True)
    assert result.returncode == 130, result.stderr
    assert (result.stdout + result.stderr).count("SIGINT received") == 1
    assert "stopped by SIGINT at iteration 4 after saving a checkpoint" in result.stdout
