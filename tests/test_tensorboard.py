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

from ignite_app.runstate.checkpoint import load_checkpoint
from ignite_app.metrics import ClassificationReport
from ignite_app.reporting.writers import classification_report_csv, confusion_matrix_csv, history_columns

CLASSES = [str(d) for d in range(10)]
EPOCHS = [1, 2]
REPORT_IMAGES = ["val/confusion_matrix", "val/confusion_matrix_normalized"]
PER_CLASS = [f"val/per_class/{c}/{score}" for c in CLASSES for score in ("precision", "recall", "f1")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """2 epochs of 3 iterations, weight norms every 2 and gradient norms every 3 iterations."""
    out = tmp_path_factory.mktemp("tensorboard")
    result = run_script("train.py", "--epochs", "2", "--epoch-length", "3", "--output-dir", out, "--run-name", "run",
                        "--no-progress", "--log-every", "1", "--log-weights", "2", "--log-grads", "3")
    assert result.returncode == 0, result.stderr
    assert f"reports: {out / 'run' / 'reports'}" in result.stdout
    return out / "run"


def test_the_reports_folder_holds_the_best_epochs_report_and_the_history(run_dir):
    folder = run_dir / "reports"
    assert sorted(p.name for p in folder.iterdir()) == [
        "classification_report.csv", "confusion_matrix.csv", "confusion_matrix.png", "history.csv"]
    best = load_checkpoint(run_dir / "checkpoints" / "training_6.pt")["best_report"]
    report = ClassificationReport.from_counts(best["counts"].numpy(), CLASSES)
    assert (folder / "confusion_matrix.csv").read_text() == confusion_matrix_csv(report)
    assert (folder / "classification_report.csv").read_text() == classification_report_csv(report)
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


def test_the_event_file_has_every_report_tag_at_every_epoch(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert sorted(tags["images"]) == REPORT_IMAGES
    for tag in REPORT_IMAGES:
        images = events.Images(tag)
        assert [i.step for i in images] == EPOCHS
        assert Image.open(io.BytesIO(images[-1].encoded_image_string)).size == (images[-1].width, images[-1].height)
    [text_tag] = tags["tensors"]
    assert text_tag == "val/classification_report"
    text = events.Tensors(text_tag)[-1].tensor_proto.string_val[0].decode()
    assert "| macro avg |" in text and "| weighted avg |" in text and "**accuracy**" in text
    assert set(PER_CLASS) <= set(tags["scalars"])
    assert all([e.step for e in events.Scalars(tag)] == EPOCHS for tag in PER_CLASS)
    assert [e.step for e in events.Scalars("hparam/best_accuracy")] == [2]
    assert [e.step for e in events.Scalars("weights_norm/0/weight")] == [2, 4, 6]
    assert [e.step for e in events.Scalars("grads_norm/0/weight")] == [3, 6]
    assert set(events.PluginTagToContent("hparams")) == {
        "_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}


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
        points = get(f"{base}/scalars/scalars?{query(run='run', tag='val/per_class/7/recall')}")
        assert [step for _, step, _ in points] == EPOCHS

        images = get(f"{base}/images/tags")["run"]
        assert sorted(images) == REPORT_IMAGES
        for tag in REPORT_IMAGES:
            entries = get(f"{base}/images/images?{query(run='run', tag=tag, sample=0)}")
            assert [e["step"] for e in entries] == EPOCHS
        png = get(f"{base}/images/individualImage?{entries[-1]['query']}")
        assert np.asarray(Image.open(io.BytesIO(png))).shape == (700, 700, 3)

        assert get(f"{base}/text/tags") == {"run": ["val/classification_report"]}
        texts = get(f"{base}/text/text?{query(run='run', tag='val/classification_report')}")
        assert [t["step"] for t in texts] == EPOCHS
        assert "<th>precision</th>" in texts[-1]["text"] and "<td>weighted avg</td>" in texts[-1]["text"]

        experiment = get(f"{base}/hparams/experiment?{query(request=json.dumps({'experimentName': ''}))}")
        assert {"lr", "batch_size", "model", "epochs"} <= {h["name"] for h in experiment["hparamInfos"]}
        assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["hparam/best_accuracy"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
