"""Where the scores show: the report carrying them, the evaluator's shared softmax, the confident mistakes, and the
images and files drawn from them."""

import csv
import io
import warnings

import numpy as np
import pytest
import torch
from ignite.engine import Events
from PIL import Image
from score_data import assert_same, feed, sklearn_ap_auc, softmax_scores, tied_scores
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import average_precision_score
from torch import nn

from ignite_app.engines import EvalOutput, StepOptions, create_evaluator
from ignite_app.metrics import (
    AP_MACRO,
    ECE,
    MISTAKES,
    REPORT,
    ROC_AUC_MACRO,
    ClassificationReport,
    ConfidentMistakes,
    ConfusionMatrixMetric,
    ScoreMetric,
    ScoreReport,
    reliability_png,
)
from ignite_app.metrics.validation import validation_metrics
from ignite_app.models import Classifier, Preprocess
from ignite_app.reporting.mistakes import mistakes_png
from ignite_app.reporting.reliability import reliability_image
from ignite_app.reporting.writers import classification_report_csv, reliability_csv, report_markdown

NAMES = ["cat", "dog", "bird", "fish"]


def report_with_scores(probs, y, names=NAMES):
    metric = feed(ConfusionMatrixMetric(names, scores=ScoreMetric(len(names), names)), probs, y)
    return metric.compute()


def test_the_report_carries_ap_and_roc_auc_per_class_and_in_its_summary_rows():
    probs, y = softmax_scores(600, 4, seed=1, absent=(3,))
    report = report_with_scores(probs, y)
    ap, auc = sklearn_ap_auc(probs, y)
    table = report.table()
    assert list(report.per_class.columns) == ["precision", "recall", "f1", "accuracy", "ap", "roc_auc", "support"]
    np.testing.assert_allclose(report.per_class["ap"], ap, atol=1e-12)
    assert np.isnan(report.per_class.loc["fish", "roc_auc"])  # no positives: no ROC-AUC
    assert table.loc["macro avg", "ap"] == pytest.approx(ap.mean(), abs=1e-12)
    assert table.loc["macro avg", "roc_auc"] == pytest.approx(np.nanmean(auc), abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)  # "No positive class found in y_true"
        weighted = average_precision_score(np.eye(4)[y.numpy()], probs.numpy(), average="weighted")
    assert table.loc["weighted avg", "ap"] == pytest.approx(weighted, abs=1e-12)
    assert report.scalars()[AP_MACRO] == report.scores.ap_macro and ECE in report.scalars()
    text = report.to_text()
    assert "mAP " in text and "(1 of 4 classes left out)" in text
    assert report_markdown(report).endswith(str(report.scores))
    rows = list(csv.reader(io.StringIO(classification_report_csv(report))))
    assert rows[0] == ["class", "precision", "recall", "f1", "accuracy", "ap", "roc_auc", "support"]
    assert rows[4][6] == ""  # fish's ROC-AUC: an empty cell
    reliability = list(csv.reader(io.StringIO(reliability_csv(report))))
    assert reliability[0] == ["bin", "lower", "upper", "count", "confidence", "accuracy"] and len(reliability) == 16
    assert sum(int(row[3]) for row in reliability[1:]) == 600


def test_a_report_and_scores_of_different_validations_are_refused():
    probs, y = softmax_scores(100, 4, seed=2)
    report = report_with_scores(probs, y)
    other = report_with_scores(probs[:50], y[:50]).scores
    with pytest.raises(ValueError, match="scores cover 50 samples .* the counts 100 samples"):
        report.with_scores(other)
    assert report.with_scores(None) != report and report.with_scores(report.scores) == report


def test_a_score_report_goes_through_a_weights_only_checkpoint(tmp_path):
    probs, y = tied_scores(300, 4, seed=3, absent=(2,))
    scores = report_with_scores(probs, y).scores
    torch.save({"scores": scores.state_dict()}, tmp_path / "c.pt")
    assert_same(ScoreReport.from_state_dict(torch.load(tmp_path / "c.pt", weights_only=True)["scores"]), scores)


def test_the_evaluator_shares_one_softmax_between_the_report_and_the_scores():
    torch.manual_seed(0)
    model = Classifier(Preprocess([0.5] * 3, [0.25] * 3), nn.Sequential(nn.Flatten(), nn.Linear(12, 4))).eval()
    images = torch.randint(0, 256, (50, 3, 2, 2), dtype=torch.uint8)
    y = torch.randint(0, 4, (50,))
    evaluator = create_evaluator(model, StepOptions(torch.device("cpu")),
                                 validation_metrics(NAMES, nn.CrossEntropyLoss(), torch.device("cpu"), mistakes=3))
    outputs = []
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output))
    evaluator.run(list(zip(images.split(16), y.split(16))))
    output = outputs[0]
    assert isinstance(output, EvalOutput) and len(output) == 2  # (logits, y) for ignite's metrics and users
    logits, _ = output
    assert torch.equal(output.probs, logits.softmax(dim=1)) and output.images.dtype == torch.uint8
    metrics = evaluator.state.metrics
    with torch.no_grad():
        probs = model(images).softmax(dim=1)
    assert_same(metrics[REPORT].scores, feed(ScoreMetric(4, NAMES), probs, y).compute())
    assert np.array_equal(metrics[REPORT].counts, ClassificationReport.from_counts(
        np.bincount(y.numpy() * 4 + probs.argmax(dim=1).numpy(), minlength=16).reshape(4, 4), NAMES).counts)
    assert metrics[ROC_AUC_MACRO] == metrics[REPORT].scores.roc_auc_macro
    assert len(metrics[MISTAKES]) == 3


def test_with_scores_the_confusion_matrix_needs_probabilities():
    metric = ConfusionMatrixMetric(["a", "b"], scores=ScoreMetric(2, ["a", "b"]))
    with pytest.raises(ValueError, match=r"probs must be float probabilities of shape \(B, 2\)"):
        metric.update((torch.tensor([0, 1]), torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="scores is a ScoreMetric of classes"):
        ConfusionMatrixMetric(["a", "b"], scores=ScoreMetric(2))


def brute_force_mistakes(probs, y, k):
    confidence, predicted = probs.max(dim=1)
    wrong = [(-float(confidence[i]), i) for i in range(len(y)) if predicted[i] != y[i]]
    return [i for _, i in sorted(wrong)[:k]]


@pytest.mark.parametrize("k", [1, 5, 1000])
def test_the_confident_mistakes_are_the_most_confident_wrong_predictions(k):
    probs, y = tied_scores(400, 5, seed=4)  # many equal confidences: ties go to the lower index
    images = torch.rand(400, 3, 4, 4)  # float images in [0, 1] are kept as uint8 pixels
    metric = ConfidentMistakes(k, output_transform=lambda out: out)
    for chunk in torch.arange(400).split(33):
        metric.update((probs[chunk], y[chunk], images[chunk]))
    mistakes = metric.compute()
    expected = brute_force_mistakes(probs, y, k)
    assert mistakes.index.tolist() == expected
    assert torch.equal(mistakes.images, (images[expected] * 255).round().to(torch.uint8))
    assert mistakes.true.tolist() == y[expected].tolist()
    assert (mistakes.predicted != mistakes.true).all()


def test_a_validation_without_mistakes_gives_none():
    metric = ConfidentMistakes(4, output_transform=lambda out: out)
    metric.update((torch.eye(3), torch.arange(3), torch.zeros(3, 1, 2, 2, dtype=torch.uint8)))
    assert len(metric.compute()) == 0
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        ConfidentMistakes(0)


def test_the_mistakes_grid_shows_each_image_with_its_labels():
    probs, y = tied_scores(200, 4, seed=5)
    images = torch.zeros(200, 3, 8, 8, dtype=torch.uint8)
    images[:, 0] = 255  # red images: the tiles are red squares
    metric = ConfidentMistakes(10, output_transform=lambda out: out)
    metric.update((probs, y, images))
    png = Image.open(io.BytesIO(mistakes_png(metric.compute(), NAMES, "epoch 1")))
    pixels = np.asarray(png.convert("RGB"))
    assert png.size[0] >= 4 * 112 and png.size[1] >= 3 * 112  # 4 tiles per row: 3 rows
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 50)
    assert red.sum() == 10 * 112 * 112  # ten 8x8 images scaled to 112 px, nearest-neighbour
    empty = ConfidentMistakes(1, output_transform=lambda out: out)
    empty.update((torch.eye(2), torch.arange(2), torch.zeros(2, 1, 2, 2, dtype=torch.uint8)))
    assert Image.open(io.BytesIO(mistakes_png(empty.compute(), NAMES, "epoch 1"))).size[1] > 0


@pytest.mark.parametrize("scale", [0.5, 2.5, 8.0])
def test_the_painted_reliability_diagram_matches_matplotlibs(scale):
    probs, y = softmax_scores(3000, 10, seed=6, scale=scale)
    scores = feed(ScoreMetric(10), probs, y).compute()
    drawn = np.asarray(Image.open(io.BytesIO(reliability_png(scores, "t"))).convert("RGB")).astype(int)
    painted = np.asarray(Image.open(io.BytesIO(reliability_image(scores, "t")))).astype(int)
    assert painted.shape == drawn.shape == (320, 320, 3)

    def bars(pixels):  # the blue accuracy bars
        return (pixels[..., 2] > pixels[..., 0] + 80) & (pixels[..., 2] > 150)

    overlap = (bars(drawn) & bars(painted)).sum() / (bars(drawn) | bars(painted)).sum()
    assert overlap > 0.9
    assert (np.abs(drawn - painted).max(axis=2) > 60).mean() < 0.08  # the rest: edges, antialiasing
