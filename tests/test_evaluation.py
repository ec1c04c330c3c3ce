"""Evaluation and prediction helpers in-process: report CSVs, data selection, input collection, refusals."""

import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ignite_app.runstate.checkpoint import CheckpointError
from ignite_app.config import TrainConfig
from ignite_app.data.builtin import load_digits_data
from ignite_app.errors import DataError
from ignite_app.evaluation import SavedModel, evaluation_config
from ignite_app.metrics import ClassificationReport
from ignite_app.models import build_classifier
from ignite_app.prediction import Prediction, collect_inputs, predict, predictions_csv


def rows(text):
    return list(csv.reader(io.StringIO(text)))


@pytest.fixture
def report():
    return ClassificationReport.from_counts([[3, 1, 0], [0, 2, 0], [1, 0, 0]], ["cat", "dog, big", "owl"])


def saved_model(config, classes=("a", "b"), shape=(3, 8, 8)):
    mean, std = (0.5,) * shape[0], (0.25,) * shape[0]
    model = build_classifier(config.model, len(classes), shape, mean, std)
    return SavedModel(Path("run/best_model.pt"), model.eval(), config, tuple(classes), shape, mean, std)


def test_evaluation_data_defaults_to_the_training_runs_and_data_dir_drops_its_split():
    trained = TrainConfig(dataset="folder", data_dir="pets", val_split=0.2, label_map="labels.txt", batch_size=8,
                          image_size=48)
    saved = saved_model(trained)
    assert evaluation_config(saved) == trained
    other = evaluation_config(saved, data_dir=Path("test_set"), on_bad_image="skip", num_workers=2)
    assert (other.dataset, other.data_dir, other.val_split, other.label_map) == ("folder", Path("test_set"), None,
                                                                                 None)
    assert (other.on_bad_image, other.num_workers, other.image_size, other.batch_size) == ("skip", 2, 48, 8)
    assert evaluation_config(saved, dataset="digits").data_dir is None
    assert evaluation_config(saved, dataset="folder") == trained  # the checkpoint's own dataset: its own folder


def test_digits_are_raw_uint8_pixels_and_their_constants_are_on_the_unit_scale():
    data = load_digits_data()
    images = data.train.images
    assert images.dtype == torch.uint8 and int(images.max()) == 255  # 0..16 ink levels scaled to 0..255
    assert data.mean == pytest.approx((float(images.float().mean() / 255),))


def test_inputs_are_files_or_folders_searched_recursively(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.png", "a/b/y.JPG", "a/notes.txt", "z.webp"):
        (tmp_path / name).write_bytes(b"")
    assert collect_inputs([tmp_path / "z.webp", tmp_path / "a"]) == [tmp_path / "z.webp", tmp_path / "a" / "x.png",
                                                                     tmp_path / "a" / "b" / "y.JPG"]
    with pytest.raises(DataError, match=r"input .*nope.png: no such file or folder"):
        collect_inputs([tmp_path / "nope.png"])
    with pytest.raises(DataError, match=r"input .*notes.txt is not an image file; supported: .bmp, .gif"):
        collect_inputs([tmp_path / "a" / "notes.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"input folder .*empty holds no images"):
        collect_inputs([tmp_path / "empty"])


def test_predict_needs_a_model_trained_on_image_files():
    with pytest.raises(CheckpointError, match=r"was trained on --dataset digits, not on image files; predict.py "
                                              r"needs a model trained with --dataset folder"):
        predict(saved_model(TrainConfig(), shape=(1, 8, 8)), [])


def test_prediction_rows_add_the_next_labels_with_top_k():
    predictions = [Prediction("x.png", ("b", "a"), (0.75, 0.25))]
    assert rows(predictions_csv(predictions, 2)) == [["path", "label", "confidence", "label_2", "confidence_2"],
                                                     ["x.png", "b", "0.750000", "a", "0.250000"]]


def test_predictions_come_in_file_order_with_softmax_confidences(tmp_path):
    from PIL import Image

    files = []
    for i in range(5):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    saved = saved_model(TrainConfig(dataset="folder", data_dir="x", image_size=8))
    predictions, skipped = predict(saved, files, top_k=2, batch_size=2)
    assert [p.path for p in predictions] == [str(f) for f in files] and skipped == []
    for p in predictions:
        assert sum(p.confidences) == pytest.approx(1.0) and set(p.labels) == {"a", "b"}
    x = torch.stack([torch.full((3, 8, 8), 40 * i, dtype=torch.uint8) for i in range(5)])  # raw pixels
    with torch.no_grad():
        expected = saved.model(x).softmax(dim=1).max(dim=1).values
    assert [p.confidences[0] for p in predictions] == pytest.approx(expected.tolist(), rel=1e-5)


@pytest.mark.parametrize(("argv", "message"), [
    (["--nproc-per-node", "2"], "--nproc-per-node 2 needs --backend gloo (CPU) or nccl (GPUs)"),
    (["--val-split", "1.5"], "--val-split must be < 1, got 1.5"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--dataset", "cifar"], "--dataset 'cifar' is not a registered dataset (did you mean 'cifar10' or 'cifar100'?); "
                             "registered: digits, synthetic, folder, mnist, fashion-mnist, cifar10, cifar100"),
    (["--split", "train"], "argument --split: invalid choice: 'train' (choose from 'val', 'test')"),
])
def test_evaluate_options_are_checked_with_exit_code_2(argv, message, capsys):
    from ignite_app.cli.evaluate import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", "best_model.pt", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_checkpoint_is_named(tmp_path):
    from ignite_app.evaluation import load_saved_model

    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {tmp_path / 'nope.pt'} does not exist")):
        load_saved_model(tmp_path / "nope.pt")
