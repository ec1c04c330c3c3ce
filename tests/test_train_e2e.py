"""scripts/train.py end to end, in a subprocess, as a user runs it."""

import json

import pytest
import torch
from conftest import run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ignite_app.cli import train as cli
from ignite_app.config import TrainConfig
from ignite_app.app import build
from ignite_app.data.builtin import TensorImageDataset, load_digits_data
from ignite_app.errors import TrainingDiverged
from ignite_app.metrics import read_label_map

BEST_KEYS = {"state_dict", "optimizer", "lr_scheduler", "best_acc", "epoch", "classes", "config"}


def scalar_steps(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_a_short_run_leaves_a_complete_run_folder(tmp_path, quick_args):
    result = run_script("train.py", *quick_args)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"

    summaries = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [s.split("|")[0].strip() for s in summaries] == ["epoch 1/2", "epoch 2/2"]
    assert "confusion matrix (rows: true class, columns: predicted class)" in result.stdout
    assert "macro avg" in result.stdout and "weighted avg" in result.stdout
    assert f"best checkpoint: {run_dir / 'checkpoints' / 'best_model.pt'}" in result.stdout
    assert f"tensorboard --logdir {tmp_path}" in result.stdout

    config = json.loads((run_dir / "config.json").read_text())
    assert config == TrainConfig(epochs=2, epoch_length=5, output_dir=tmp_path, run_name="run", progress=False,
                                 log_every=2).to_dict()
    assert read_label_map(run_dir / "label_map.txt") == [str(d) for d in range(10)]
    assert [line.split(" ", 2)[2] for line in (run_dir / "train.log").read_text().splitlines()
            if " epoch " in line[:30]] == summaries

    best = torch.load(run_dir / "checkpoints" / "best_model.pt", weights_only=True)
    assert BEST_KEYS <= set(best) and best["classes"] == [str(d) for d in range(10)]
    assert isinstance(best["best_acc"], float) and best["epoch"] in (1, 2) and best["config"] == config

    steps = scalar_steps(run_dir)
    assert steps["train/loss"] == [2, 4, 6, 8, 10]
    for tag in ("train/epoch_loss", "train/lr", "val/loss", "val/accuracy", "val/precision_macro",
                "val/recall_macro", "val/f1_macro"):
        assert steps[tag] == [1, 2], tag


def test_an_existing_run_folder_is_refused_and_left_untouched(tmp_path, quick_args):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("keep me")
    result = run_script("train.py", *quick_args)
    assert result.returncode == 2
    assert f"--run-name 'run': the run folder {tmp_path / 'run'} already exists" in result.stderr
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["notes.txt"]


def test_an_invalid_option_exits_with_2_and_names_the_flag(tmp_path):
    result = run_script("train.py", "--plateau-factor", "2", "--output-dir", tmp_path)
    assert result.returncode == 2
    assert "--plateau-factor must be < 1, got 2.0" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_diverging_run_stops_with_the_iteration_where_the_loss_went_bad(tmp_path):
    digits = load_digits_data()
    images = digits.train.images.float() / 255
    images[:, 0, 0, 0] = float("nan")  # a poisoned pixel in every image: NaN from the first step
    data = (TensorImageDataset(images, digits.train.labels), digits.val, digits.classes)
    app = build(TrainConfig(epochs=1, output_dir=tmp_path, run_name="nan", progress=False), data=data)
    with pytest.raises(TrainingDiverged, match=r"the training loss became non-finite at iteration 1 \(epoch 1\); "
                                               r"detected at iteration 10"):
        app.run()


def test_nan_weights_never_become_the_best_model(tmp_path, caplog):
    # An lr of 1e9 keeps the 3 training losses finite but leaves NaN weights: the validation loss is NaN.
    code = cli.main(["--lr", "1e9", "--epochs", "1", "--epoch-length", "3", "--output-dir", str(tmp_path),
                     "--run-name", "nan", "--no-progress"])
    assert code == 1
    assert "after epoch 1 (iteration 3): the model was not saved as the best model" in caplog.text
    assert not (tmp_path / "nan" / "checkpoints" / "best_model.pt").exists()
    assert "the model was not saved as the best model" in (tmp_path / "nan" / "train.log").read_text()


@pytest.mark.parametrize("device", ["cuda"])
def test_an_unavailable_device_is_a_usage_error(tmp_path, device):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = run_script("train.py", "--device", device, "--output-dir", tmp_path)
    assert result.returncode == 2 and "--device cuda: no CUDA device is available here" in result.stderr
