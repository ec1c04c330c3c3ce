"""Your own images end to end, as a user runs the scripts: train on folders, evaluate, predict, resume exactly."""

import csv
import dataclasses
import io
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, run_script
from folder_data import write_digit_folders
from PIL import Image, ImageOps
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ignite_app.app import build
from ignite_app.config import TrainConfig
from ignite_app.data.badimages import SKIPPED_TAG
from ignite_app.data.samplers import EpochBatchSampler
from ignite_app.data.scan import find_images, label_map_classes, scan_folder
from ignite_app.data.stats import sample_indices
from ignite_app.evaluation import load_saved_model
from ignite_app.metrics import read_label_map
from ignite_app.prediction import predict
from ignite_app.runstate.checkpoint import CheckpointError, load_checkpoint, training_checkpoints

LABELS = ["digit3", "digit1", "digit0", "digit2"]  # not sorted: the label map decides the indices
TRAIN_ARGS = ["--dataset", "folder", "--image-size", "16", "--channels", "1", "--batch-size", "16", "--no-progress",
              "--log-every", "4", "--num-workers", "0"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    data = write_digit_folders(root / "digits", train=30, val=10)
    (root / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return data


@pytest.fixture(scope="module")
def folder_run(data_dir):
    """A 4-epoch run on 120 training and 40 validation PNGs."""
    out = data_dir.parent / "runs"
    result = run_script("train.py", *TRAIN_ARGS, "--data-dir", data_dir, "--label-map", data_dir.parent / "labels.txt",
                        "--epochs", "4", "--output-dir", out, "--run-name", "run")
    assert result.returncode == 0, result.stderr
    return out / "run", result


@pytest.fixture(scope="module")
def evaluated(folder_run, tmp_path_factory):
    """scripts/evaluate.py on the run's best model, in one process."""
    run_dir, _ = folder_run
    out = tmp_path_factory.mktemp("evaluation")
    result = run_script("evaluate.py", "--checkpoint", run_dir / "checkpoints" / "best_model.pt", "--output", out)
    assert result.returncode == 0, result.stderr
    return out, result


def read_csv_text(text):
    return list(csv.reader(io.StringIO(text)))


def read_csv(path):
    return read_csv_text(Path(path).read_text())


def snapshot(folder):
    return {p: p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def test_a_folder_run_learns_and_saves_what_evaluation_needs(folder_run):
    run_dir, result = folder_run
    assert "data: folder, 120 training and 40 validation images, 4 classes, input 1x16x16" in result.stdout
    assert read_label_map(run_dir / "label_map.txt") == LABELS
    best = load_checkpoint(run_dir / "checkpoints" / "best_model.pt")
    assert best["classes"] == LABELS and best["input_shape"] == [1, 16, 16]
    assert best["best_acc"] >= 0.6  # 4 classes: chance is 0.25
    assert len(best["normalization"]["mean"]) == 1 and 0 < best["normalization"]["std"][0] < 1
    newest = load_checkpoint(training_checkpoints(run_dir / "checkpoints")[0])
    assert newest["normalization"] == best["normalization"] and newest["classes"] == LABELS


def test_evaluate_reproduces_the_best_epoch_of_training(folder_run, evaluated):
    run_dir, _ = folder_run
    out, result = evaluated
    recorded = load_checkpoint(training_checkpoints(run_dir / "checkpoints")[0])["best_report"]["counts"]
    matrix = read_csv(out / "confusion_matrix.csv")
    assert matrix[0] == ["true\\predicted", *LABELS] and [row[0] for row in matrix[1:]] == LABELS
    assert torch.equal(torch.tensor([[int(v) for v in row[1:]] for row in matrix[1:]]), recorded)
    report = read_csv(out / "classification_report.csv")
    assert report[0] == ["class", "precision", "recall", "f1", "accuracy", "ap", "roc_auc", "support"]
    assert [row[0] for row in report[1:]] == [*LABELS, "macro avg", "weighted avg"]
    assert [row[-1] for row in report[1:]] == ["10"] * 4 + ["40", "40"] and report[-1][4] == ""
    for name in ("classification_report.csv", "reliability.csv"):  # the scores too, to the last digit
        assert (out / name).read_text() == (run_dir / "reports" / name).read_text()
    assert "mAP " in result.stdout and "(exact)" in result.stdout
    assert "confusion matrix (rows: true class, columns: predicted class)" in result.stdout
    assert "data: folder (" in result.stdout and "), 40 images\n" in result.stdout  # the validation images only


def test_predict_on_the_validation_folder_agrees_with_evaluation(folder_run, evaluated, data_dir, tmp_path):
    run_dir, _ = folder_run
    out, _ = evaluated
    predictions = tmp_path / "predictions.csv"
    result = run_script("predict.py", "--checkpoint", run_dir / "checkpoints" / "best_model.pt", data_dir / "val",
                        "--top-k", "2", "--output", predictions)
    assert result.returncode == 0, result.stderr
    rows = read_csv(predictions)
    assert rows[0] == ["path", "label", "confidence", "label_2", "confidence_2"] and len(rows) == 41
    assert all(float(r[2]) >= float(r[4]) and r[1] != r[3] for r in rows[1:])
    pairs = Counter((Path(r[0]).parent.name, r[1]) for r in rows[1:])  # (true class folder, predicted label)
    matrix = read_csv(out / "confusion_matrix.csv")
    assert {(row[0], LABELS[j]): int(v) for row in matrix[1:] for j, v in enumerate(row[1:]) if int(v)} == pairs


def test_predict_refuses_an_unreadable_input_unless_told_to_skip_it(folder_run, data_dir, tmp_path, capsys):
    from ignite_app.cli.predict import main

    checkpoint = folder_run[0] / "checkpoints" / "best_model.pt"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    args = ["--checkpoint", str(checkpoint), str(bad), str(data_dir / "val" / "digit0")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--output", str(tmp_path / "p.csv")])
    assert exit_info.value.code == 2 and not (tmp_path / "p.csv").exists()  # nothing written
    assert f"predict.py: error: 1 input image cannot be decoded:\n  {bad}: cannot identify" in capsys.readouterr().err
    assert main([*args, "--on-bad-image", "skip"]) == 0
    out, err = capsys.readouterr()
    assert f"predict.py: skipped unreadable image {bad}: " in err
    assert len(read_csv_text(out)) == 11 and all("digit0" in row[0] for row in read_csv_text(out)[1:])


def test_evaluate_in_two_gloo_processes_counts_every_image_once_and_leaves_out_the_unreadable(
        folder_run, evaluated, data_dir, tmp_path):
    run_dir, _ = folder_run
    single, _ = evaluated
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    (copy / "val" / "digit2" / "broken.png").write_bytes(b"junk")  # met when loaded by one of the two processes
    result = run_script("evaluate.py", "--checkpoint", run_dir / "checkpoints" / "best_model.pt", "--output",
                        tmp_path, "--nproc-per-node", "2", "--backend", "gloo", "--data-dir", copy,
                        "--on-bad-image", "skip")
    assert result.returncode == 0, result.stderr
    for name in ("confusion_matrix.csv", "classification_report.csv"):
        assert (tmp_path / name).read_text() == (single / name).read_text(), name
    assert result.stdout.count("confusion matrix") == 1  # rank 0 alone prints
    assert f"data: folder ({copy}), 40 images (1 unreadable left out)" in result.stdout
    assert f"{copy / 'val' / 'digit2' / 'broken.png'}: cannot identify image file" in result.stdout


def test_predictions_are_the_square_resize_ones_when_the_crop_keeps_the_whole_image(folder_run, data_dir):
    """The pipeline's validation view (short side, then centre crop) is the old square resize for square images
    at --crop-fraction 1: same labels, confidences within rounding. At the default 0.875 it crops the centre."""
    saved = load_saved_model(folder_run[0] / "checkpoints" / "best_model.pt")
    assert saved.crop_fraction == 0.875
    files = [Path(p) for p in find_images(data_dir / "val")]
    whole = dataclasses.replace(saved, crop_fraction=1.0)
    predictions, _ = predict(whole, files, top_k=2)

    def square_resize(path):  # the pipeline before: Pillow, EXIF, convert, resize to 16 x 16
        with Image.open(path) as image:
            array = np.asarray(ImageOps.exif_transpose(image).convert("L").resize((16, 16), Image.Resampling.BILINEAR))
        return torch.from_numpy(array.copy()).unsqueeze(0)

    with torch.no_grad():
        before = saved.model(torch.stack([square_resize(p) for p in files])).softmax(dim=1)
    assert [p.labels[0] for p in predictions] == [saved.classes[i] for i in before.argmax(dim=1).tolist()]
    assert np.allclose([p.confidences[0] for p in predictions], before.max(dim=1).values.numpy(), atol=0.02)


def test_evaluate_refuses_data_with_other_classes(folder_run, tmp_path):
    run_dir, _ = folder_run
    other = write_digit_folders(tmp_path / "other", classes=(0, 1, 2, 3, 4), train=1, val=1)
    checkpoint = run_dir / "checkpoints" / "best_model.pt"
    result = run_script("evaluate.py", "--checkpoint", checkpoint, "--data-dir", other, "--output", tmp_path / "e")
    assert result.returncode == 2
    assert (f"evaluate.py: error: class folder {other / 'val' / 'digit4'} is not in the classes of checkpoint "
            f"{checkpoint}") in result.stderr
    assert "the model cannot predict it" in result.stderr and not (tmp_path / "e").exists()


def test_a_start_on_bad_data_exits_2_and_leaves_earlier_runs_untouched(folder_run, data_dir, tmp_path):
    run_dir, _ = folder_run
    broken = tmp_path / "broken"
    write_digit_folders(broken, classes=(0, 1), train=2, val=1)
    (broken / "train" / "digit0" / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    before = snapshot(run_dir.parent)
    result = run_script("train.py", *TRAIN_ARGS, "--data-dir", broken, "--output-dir", run_dir.parent, "--epochs", "1")
    assert result.returncode == 2
    bad = broken / "train" / "digit0" / "bad.jpg"
    assert f"train.py: error: 1 image cannot be decoded:\n  {bad}: " in result.stderr
    assert "pass --on-bad-image skip" in result.stderr
    assert snapshot(run_dir.parent) == before


def test_a_single_class_exits_2_before_a_run_folder_is_made(tmp_path):
    data = write_digit_folders(tmp_path / "d", classes=(0,), train=4, val=0, flat=True)
    runs = tmp_path / "runs"
    result = run_script("train.py", *TRAIN_ARGS, "--data-dir", data, "--val-split", "0.5", "--output-dir", runs,
                        "--epochs", "1", "--epoch-length", "2")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"train.py: error: {data} has a single class folder, {data / 'digit0'}: a classifier "
                             "needs at least 2 classes; add a folder of images for each other class\n")
    assert not runs.exists() or not any(runs.iterdir())


def test_unreadable_images_met_when_loaded_are_replaced_or_left_out_counted_and_listed(tmp_path):
    data = write_digit_folders(tmp_path / "d", classes=(0, 1), train=3, val=2)
    scan = scan_folder(data, None)
    sampled = set(sample_indices(len(scan.train), 2).tolist())  # --stats-images 2: the images start-up decodes
    train_bad = Path(next(p for i, (p, _) in enumerate(scan.train.items()) if i not in sampled))
    val_bad = data / "val" / "digit1" / "zero_bytes.png"
    train_bad.write_bytes(b"junk")
    val_bad.write_bytes(b"")
    app = build(TrainConfig(dataset="folder", data_dir=data, on_bad_image="skip", image_size=8, epochs=1,
                            stats_images=2, num_workers=0, output_dir=tmp_path / "runs", run_name="r", progress=False))
    app.run()
    assert app.evaluator.state.dropped_images == 1  # the others counted once each
    assert app.evaluator.state.metrics["report"].num_samples == 4
    log = (tmp_path / "runs" / "r" / "train.log").read_text()
    assert "validation left out 1 unreadable image (--on-bad-image skip)" in log
    assert "epoch 1: replaced 1 unreadable training image by other samples (--on-bad-image skip)" in log
    assert f"  {train_bad}: cannot identify image file" in log and f"  {val_bad}: cannot identify image file" in log
    events = EventAccumulator(str(tmp_path / "runs" / "r"), size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars(SKIPPED_TAG)] == [(1, 2.0)]


@pytest.fixture
def train_command():
    """``scripts/train.py``'s main, run in this process (no interpreter to start), without the console handler it
    leaves behind (it would write to this test's captured output, closed after it)."""
    from ignite_app.cli.train import main

    def console_handlers():
        return [h for h in logging.getLogger("ignite_app").handlers if getattr(h, "_ignite_app_console", False)]

    for handler in console_handlers():
        logging.getLogger("ignite_app").removeHandler(handler)
    yield lambda *args: main([str(a) for a in args])
    for handler in console_handlers():
        logging.getLogger("ignite_app").removeHandler(handler)


def test_an_unreadable_image_met_mid_epoch_stops_with_exit_2_and_the_run_resumes_exactly_without_it(
        data_dir, tmp_path, train_command):
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    labels = data_dir.parent / "labels.txt"
    train = scan_folder(copy, None, label_map_classes(labels)).train
    sampled = set(sample_indices(len(train), 20).tolist())  # --stats-images 20: decoded at the start
    order = EpochBatchSampler(len(train), 16, seed=0)
    order.set_epoch(1)
    batch_of = {i: b for b, batch in enumerate(order) for i in batch}
    bad_index = next(i for i in range(len(train)) if i not in sampled and batch_of[i] >= 3)
    bad = Path(train.path(bad_index))
    bad.write_bytes(b"junk")
    args = [*TRAIN_ARGS, "--data-dir", copy, "--label-map", labels, "--epochs", "2", "--stats-images", "20",
            "--checkpoint-every", "2", "--output-dir", tmp_path]
    assert train_command(*args, "--run-name", "run") == 2
    log = (tmp_path / "run" / "train.log").read_text()
    assert (f"train.py: error: training image {bad} cannot be decoded (cannot identify image file); the run "
            "stopped before training on it and its last checkpoint is intact") in log
    last = 2 * (batch_of[bad_index] // 2)  # iterations are numbered from 1: the batch is iteration b + 1
    assert training_checkpoints(tmp_path / "run" / "checkpoints")[0].name == f"training_{last}.pt"
    command = log.split("continue the run without it with: ")[1].splitlines()[0]
    assert command.startswith("python scripts/train.py ") and command.endswith(
        "--on-bad-image skip --resume auto --run-name run")
    assert train_command(*shlex.split(command)[2:]) == 0
    assert train_command(*args, "--on-bad-image", "skip", "--run-name", "reference") == 0
    ours = load_checkpoint(tmp_path / "run" / "checkpoints" / "training_16.pt")
    theirs = load_checkpoint(tmp_path / "reference" / "checkpoints" / "training_16.pt")
    assert all(torch.equal(ours["model"][k], v) for k, v in theirs["model"].items())
    assert torch.equal(ours["best_report"]["counts"], theirs["best_report"]["counts"])
    resumed_log = (tmp_path / "run" / "train.log").read_text()
    assert "resumed from" in resumed_log and f"  {bad}: cannot identify image file" in resumed_log


def test_augmented_training_with_workers_resumes_exactly(folder_run, data_dir, tmp_path):
    """Killed mid-epoch with 2 loader workers and resumed: the weights of the uninterrupted run, which had none."""
    reference, _ = folder_run  # augmented (the default for folders), --num-workers 0
    args = [*TRAIN_ARGS, "--data-dir", data_dir, "--label-map", data_dir.parent / "labels.txt", "--epochs", "4",
            "--output-dir", tmp_path, "--run-name", "run", "--num-workers", "2", "--checkpoint-every", "4"]
    env = {**os.environ, "CRASH_AT": "iteration:13"}  # 8 iterations per epoch: killed in epoch 2
    crashed = subprocess.run([sys.executable, str(ROOT / "tests" / "crash_run.py"), *map(str, args)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = run_script("train.py", *args, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and "training_12.pt (epoch 1, iteration 12)" in resumed.stdout
    ours = load_checkpoint(tmp_path / "run" / "checkpoints" / "training_32.pt")
    theirs = load_checkpoint(reference / "checkpoints" / "training_32.pt")
    assert all(torch.equal(ours["model"][k], v) for k, v in theirs["model"].items())
    assert torch.equal(ours["best_report"]["counts"], theirs["best_report"]["counts"])


def test_resuming_on_changed_training_images_is_refused(folder_run, data_dir, tmp_path):
    run_dir, _ = folder_run
    moved = tmp_path / "moved"  # a moved data folder is fine: the content is compared, not the path
    shutil.copytree(data_dir, moved)
    image = next((moved / "train" / "digit0").iterdir())
    Image.open(image).point(lambda v: 255 - v).save(image)  # one training image edited
    checkpoint = training_checkpoints(run_dir / "checkpoints")[0]
    before = snapshot(run_dir)
    config = TrainConfig(dataset="folder", data_dir=moved, label_map=data_dir.parent / "labels.txt", image_size=16,
                         channels=1, batch_size=16, log_every=4, epochs=5, resume=str(checkpoint), progress=False)
    with pytest.raises(CheckpointError, match=r"comes from an incompatible run; these differ \(checkpoint -> now\):"
                                              r"\n  training-set mean and std \(the training images changed\)"):
        build(config)
    assert snapshot(run_dir) == before


def test_resuming_on_relabelled_or_added_images_is_refused_with_what_changed(folder_run, data_dir, tmp_path):
    # Neither change moves the training set's mean and std: only the file table tells them apart.
    run_dir, _ = folder_run
    changed = tmp_path / "changed"
    shutil.copytree(data_dir, changed)
    image = sorted((changed / "train" / "digit0").iterdir())[5]
    image.rename(changed / "train" / "digit1" / image.name)  # moved to another class
    shutil.copy(changed / "val" / "digit2" / "2_030.png", changed / "val" / "digit2" / "extra.png")  # added
    before = snapshot(run_dir)
    config = TrainConfig(dataset="folder", data_dir=changed, label_map=data_dir.parent / "labels.txt",
                         image_size=16, channels=1, batch_size=16, log_every=4, epochs=5, progress=False,
                         resume=str(training_checkpoints(run_dir / "checkpoints")[0]))
    with pytest.raises(CheckpointError) as refused:
        build(config)
    message = str(refused.value)
    assert "the data files:\n    1 file added: val/digit2/extra.png (val)\n" in message
    assert (f"1 file moved to another class: train/digit0/{image.name} -> train/digit1/{image.name} "
            "(digit0 -> digit1)") in message
    assert "mean and std" not in message
    assert snapshot(run_dir) == before
