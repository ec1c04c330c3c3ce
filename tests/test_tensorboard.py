"""A short run's reports: the files, the event file, and what a real TensorBoard server serves from them."""

import csv
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from conftest import free_port, run_script
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from ignite_app.runstate.checkpoint import load_checkpoint
from ignite_app.metrics import ClassificationReport, ScoreReport
from ignite_app.reporting.tensorboard import OVERVIEW_LAYOUT
from ignite_app.reporting.writers import (
    classification_report_csv,
    confusion_matrix_csv,
    history_columns,
    reliability_csv,
)

CLASSES = [str(d) for d in range(10)]
EPOCHS = [1, 2]
REPORT_IMAGES = ["val/confusion_matrix", "val/confusion_matrix_normalized", "val/mistakes", "val/reliability"]
PER_CLASS = [f"val_per_class/{c}/{score}" for c in CLASSES for score in ("precision", "recall", "f1", "ap")]
SCORE_SCALARS = ["val/ap_macro", "val/roc_auc_macro", "val/ece"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """2 epochs of 3 iterations, weight norms every 2 and gradient norms every 3 iterations, the best model chosen by
    mAP, 3 PR curves and 4 confident mistakes per validation."""
    out = tmp_path_factory.mktemp("tensorboard")
    result = run_script("train.py", "--epochs", "2", "--epoch-length", "3", "--output-dir", out, "--run-name", "run",
                        "--no-progress", "--log-every", "1", "--log-weights", "2", "--log-grads", "3",
                        "--best-metric", "ap_macro", "--pr-curves", "3", "--log-mistakes", "4")
    assert result.returncode == 0, result.stderr
    assert f"reports: {out / 'run' / 'reports'}" in result.stdout
    return out / "run"


def test_the_reports_folder_holds_the_best_epochs_report_and_the_history(run_dir):
    folder = run_dir / "reports"
    assert sorted(p.name for p in folder.iterdir()) == [
        "classification_report.csv", "confusion_matrix.csv", "confusion_matrix.png", "history.csv", "reliability.csv"]
    best = load_checkpoint(run_dir / "checkpoints" / "training_6.pt")["best_report"]
    report = ClassificationReport.from_counts(best["counts"].numpy(), CLASSES,
                                              ScoreReport.from_state_dict(best["scores"]))
    assert (folder / "confusion_matrix.csv").read_text() == confusion_matrix_csv(report)
    assert (folder / "classification_report.csv").read_text() == classification_report_csv(report)
    assert (folder / "classification_report.csv").read_text().startswith(
        "class,precision,recall,f1,accuracy,ap,roc_auc,support\n")
    assert (folder / "reliability.csv").read_text() == reliability_csv(report)
    best_model = load_checkpoint(run_dir / "checkpoints" / "best_model.pt")
    assert best_model["best_metric"] == {"name": "ap_macro", "value": best["value"]}
    assert best["metric"] == "ap_macro" and best_model["best_acc"] == best["accuracy"] == report.accuracy
    assert Image.open(folder / "confusion_matrix.png").size == (700, 700)
    with open(folder / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    # digits has 10 classes: top-5 accuracy is reported
    assert list(history[0]) == list(history_columns(top5=True)) and [row["epoch"] for row in history] == ["1", "2"]
    summaries = [line for line in (run_dir / "train.log").read_text().splitlines() if "| val_acc" in line]
    for row, line in zip(history, summaries):  # the same numbers as the summary lines
        assert f"val_acc {100 * float(row['val_accuracy']):6.2f}% | top5 {100 * float(row['top5_accuracy']):6.2f}%" \
            in line
        assert f"train_loss {float(row['train_loss']):.4f}" in line
        assert f"mAP {float(row['ap_macro']):.4f}" in line
        assert 0 < float(row["roc_auc_macro"]) <= 1 and 0 <= float(row["ece"]) <= 1


def test_the_event_file_has_every_report_tag_at_every_epoch(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert sorted(tags["images"]) == REPORT_IMAGES
    for tag in REPORT_IMAGES:
        images = events.Images(tag)
        assert [i.step for i in images] == EPOCHS
        assert Image.open(io.BytesIO(images[-1].encoded_image_string)).size == (images[-1].width, images[-1].height)
    pr_curves = sorted(t for t in tags["tensors"] if t.startswith("val/pr_curve/"))
    assert sorted(tags["tensors"]) == ["custom_scalars__config__", "val/classification_report", *pr_curves]
    text = events.Tensors("val/classification_report")[-1].tensor_proto.string_val[0].decode()
    assert "| macro avg |" in text and "| weighted avg |" in text and "**accuracy**" in text and "mAP" in text
    assert set(PER_CLASS) | set(SCORE_SCALARS) <= set(tags["scalars"])
    assert not [t for t in tags["scalars"] if t.startswith("val/per_class")]  # the old place is empty
    assert all([e.step for e in events.Scalars(tag)] == EPOCHS for tag in PER_CLASS + SCORE_SCALARS)
    assert [e.step for e in events.Scalars("hparam/best_accuracy")] == [2]
    assert [e.step for e in events.Scalars("hparam/best_ap_macro")] == [2]
    assert [e.step for e in events.Scalars("weights_norm/0/weight")] == [2, 4, 6]
    assert [e.step for e in events.Scalars("grads_norm/0/weight")] == [3, 6]
    assert set(events.PluginTagToContent("hparams")) == {
        "_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}


def test_the_pr_curves_are_tensorboards_own_data_for_the_worst_classes(run_dir):
    """TensorBoard's own reader finds, at each epoch, the 3 classes of lowest AP, each a (6, 127) curve whose
    true positives at threshold 0 are the class's validation samples."""
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    pr_tags = set(events.PluginTagToContent("pr_curves"))
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "training_6.pt")
    scores = ScoreReport.from_state_dict(checkpoint["report_logging"]["scores"])  # the last validation's
    worst = [f"val/pr_curve/{CLASSES[i]}" for i in scores.worst_classes(3)]
    assert set(worst) <= pr_tags
    for tag, i in zip(worst, scores.worst_classes(3)):
        (event,) = [e for e in events.Tensors(tag) if e.step == 2]
        curve = make_ndarray(event.tensor_proto)
        assert curve.shape == (6, 127) and curve[0, 0] == scores.support[i]  # tp at threshold 0: every positive
        np.testing.assert_allclose(curve, np.stack(scores.pr_curve(i)), rtol=1e-6)
    assert all(len([e for e in events.Tensors(tag) if e.step == 1]) <= 1 for tag in pr_tags)


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
    return json.loads(body) if response.headers.get_content_type() == "application/json" else body


def wait_for(server, url, ready, timeout=120):
    """GET ``url`` until ``ready(answer)`` holds; the server loads the run folder after it starts answering."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = get(url)
            if ready(answer):
                return answer
        except (urllib.error.URLError, ConnectionError):
            pass  # not listening yet
        assert server.poll() is None, f"tensorboard exited with {server.returncode}"
        assert time.monotonic() < deadline, f"tensorboard did not serve {url} in {timeout} s"
        time.sleep(0.2)


def query(**params):
    return urllib.parse.urlencode(params)


def test_a_real_tensorboard_server_serves_the_reports(run_dir, tmp_path):
    port = free_port()
    with open(tmp_path / "tensorboard.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(run_dir.parent),
                                   "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/data/plugin"
    try:
        scalars = wait_for(server, f"{base}/scalars/tags",
                           lambda tags: "hparam/best_accuracy" in tags.get("run", {}))["run"]
        assert set(PER_CLASS) | {"val/accuracy", "weights_norm/0/weight", "grads_norm/0/weight"} <= set(scalars)
        points = get(f"{base}/scalars/scalars?{query(run='run', tag='val_per_class/7/recall')}")
        assert [step for _, step, _ in points] == EPOCHS

        images = get(f"{base}/images/tags")["run"]
        assert sorted(images) == REPORT_IMAGES
        sizes = {}
        for tag in REPORT_IMAGES:
            entries = get(f"{base}/images/images?{query(run='run', tag=tag, sample=0)}")
            assert [e["step"] for e in entries] == EPOCHS
            png = get(f"{base}/images/individualImage?{entries[-1]['query']}")
            sizes[tag] = np.asarray(Image.open(io.BytesIO(png))).shape
        assert sizes["val/confusion_matrix"] == (700, 700, 3) and sizes["val/reliability"] == (320, 320, 3)

        assert set(SCORE_SCALARS) <= set(scalars)
        pr_curves = get(f"{base}/pr_curves/tags")["run"]
        assert len(pr_curves) >= 3 and all(tag.startswith("val/pr_curve/") for tag in pr_curves)
        tag = sorted(pr_curves)[0]
        curves = get(f"{base}/pr_curves/pr_curves?{query(run='run', tag=tag)}")["run"]
        assert {c["step"] for c in curves} <= set(EPOCHS) and len(curves[0]["precision"]) > 0
        layout = get(f"{base}/custom_scalars/layout")
        charts = [chart["title"] for category in layout["category"] for chart in category["chart"]]
        assert charts == list(OVERVIEW_LAYOUT["overview"])

        assert get(f"{base}/text/tags") == {"run": ["val/classification_report"]}
        texts = get(f"{base}/text/text?{query(run='run', tag='val/classification_report')}")
        assert [t["step"] for t in texts] == EPOCHS
        assert "<th>precision</th>" in texts[-1]["text"] and "<td>weighted avg</td>" in texts[-1]["text"]

        experiment = get(f"{base}/hparams/experiment?{query(request=json.dumps({'experimentName': ''}))}")
        assert {"lr", "batch_size", "model", "epochs"} <= {h["name"] for h in experiment["hparamInfos"]}
        assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["hparam/best_accuracy",
                                                                       "hparam/best_ap_macro"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
