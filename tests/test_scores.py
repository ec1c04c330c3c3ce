"""ScoreMetric against scikit-learn and TensorBoard, in both memory modes, in one process."""

import io

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from ignite.exceptions import NotComputableError
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import compute_curve

from score_data import assert_same, feed, sklearn_ap_auc, softmax_scores, tied_scores
from ignite_app.metrics import ranking
from ignite_app.metrics.scores import (
    AP_MACRO,
    ECE,
    EXACT,
    HISTOGRAM,
    ROC_AUC_MACRO,
    SCORES,
    ScoreMetric,
    ScoreReport,
    reliability_png,
)

BUDGETS = {EXACT: 256 * 2**20, HISTOGRAM: 0}  # a budget of 0 bytes: histograms from the first batch


def report_of(probs, y, mode=EXACT, **kwargs) -> ScoreReport:
    metric = feed(ScoreMetric(probs.shape[1], memory_budget_bytes=BUDGETS[mode], **kwargs), probs, y)
    report = metric.compute()
    assert report.mode == mode
    return report


def reference_ece(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Guo et al.'s ECE, written independently: 15 bins (lower, upper] of the top-1 probability."""
    confidence, predicted = probs.double().max(dim=1)
    correct = (predicted == y).double()
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for lower, upper in zip(edges[:-1], edges[1:]):
        inside = (confidence > lower) & (confidence <= upper)
        if inside.any():
            ece += inside.double().mean().item() * abs(correct[inside].mean().item() - confidence[inside].mean().item())
    return ece


@pytest.mark.parametrize("mode", [EXACT, HISTOGRAM])
@pytest.mark.parametrize("data", [tied_scores, softmax_scores])
def test_ap_and_roc_auc_equal_sklearn_with_ties_and_classes_without_samples(mode, data):
    probs, y = data(1500, 6, seed=3, absent=(4,))
    report = report_of(probs, y, mode)
    ap, auc = sklearn_ap_auc(probs, y)
    if mode == HISTOGRAM and data is softmax_scores:
        # continuous scores share bins: the documented error, far below the differences that matter
        np.testing.assert_allclose(report.ap, ap, atol=2e-3)
        np.testing.assert_allclose(report.roc_auc, auc, atol=5e-4)
    else:
        # exact mode, or histograms where each distinct score has a bin of its own (k / 8): sklearn's values
        np.testing.assert_allclose(report.ap, ap, rtol=0, atol=1e-12)
        np.testing.assert_allclose(report.roc_auc, auc, rtol=0, atol=1e-12)
    assert report.ap[4] == 0  # no positives: AP 0 (sklearn's value), counted in the macro mean
    assert report.ap_macro == pytest.approx(ap.mean(), abs=2e-3)
    assert np.isnan(report.roc_auc[4]) and report.roc_auc_left_out == 1  # no positives: no ROC-AUC
    assert report.roc_auc_macro == pytest.approx(np.nanmean(auc), abs=5e-4)
    assert report.support.tolist() == np.bincount(y.numpy(), minlength=6).tolist()


@pytest.mark.parametrize("mode", [EXACT, HISTOGRAM])
def test_a_class_without_negatives_has_no_roc_auc(mode):
    probs, _ = softmax_scores(50, 3, seed=0)
    report = report_of(probs, torch.zeros(50, dtype=torch.int64), mode)
    assert report.ap.tolist() == [1.0, 0.0, 0.0]  # every sample a positive: precision 1 at every threshold
    assert np.isnan(report.roc_auc).all() and report.roc_auc_left_out == 3
    assert np.isnan(report.roc_auc_macro)
    assert report.scalars() == {AP_MACRO: pytest.approx(1 / 3), ROC_AUC_MACRO: pytest.approx(np.nan, nan_ok=True),
                                ECE: report.ece}


@pytest.mark.parametrize("mode", [EXACT, HISTOGRAM])
def test_ece_and_reliability_table_computed_by_hand(mode):
    # top-1 probabilities 0.9 (right), 0.93 (wrong), 0.55 (right), 0.62 (wrong), 0.45 (right); none on a bin edge
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.93, 0.04, 0.03], [0.2, 0.55, 0.25], [0.62, 0.3, 0.08],
                          [0.3, 0.25, 0.45]])
    y = torch.tensor([0, 1, 1, 2, 2])
    report = report_of(probs, y, mode)
    # bins (b/15, (b+1)/15]: 0.9 and 0.93 in bin 13, 0.62 in 9, 0.55 in 8, 0.45 in 6
    # ECE = (2 * |0.5 - 0.915| + |1 - 0.55| + |0 - 0.62| + |1 - 0.45|) / 5 = (0.83 + 0.45 + 0.62 + 0.55) / 5
    assert report.ece == pytest.approx(0.49, abs=1e-6)
    table = report.reliability
    assert table["count"].tolist() == [0] * 6 + [1, 0, 1, 1, 0, 0, 0, 2, 0]
    assert table.loc[13, "confidence"] == pytest.approx(0.915) and table.loc[13, "accuracy"] == 0.5
    assert table.loc[[6, 8, 9], "accuracy"].tolist() == [1.0, 1.0, 0.0]
    assert table["confidence"].isna().sum() == 11  # empty bins have no value
    assert table.loc[13, "lower"] == pytest.approx(13 / 15) and table.loc[13, "upper"] == pytest.approx(14 / 15)


@pytest.mark.parametrize("mode", [EXACT, HISTOGRAM])
def test_ece_equals_an_independent_implementation(mode):
    probs, y = softmax_scores(2000, 10, seed=5)
    report = report_of(probs, y, mode)
    assert report.ece == pytest.approx(reference_ece(probs, y), abs=1e-12)
    assert report.num_samples == 2000


def test_a_confidence_on_a_bin_edge_belongs_to_the_lower_bin():
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])  # 0.5 = 7.5 / 15: bin 7; 1.0: the last bin (14)
    report = report_of(probs, torch.tensor([0, 0]))
    assert report.bin_count.nonzero()[0].tolist() == [7, 14]


@pytest.mark.parametrize("mode", [EXACT, HISTOGRAM])
@pytest.mark.parametrize("num_thresholds", [127, 64])
def test_pr_curves_equal_tensorboards_own_computation(mode, num_thresholds):
    probs, y = softmax_scores(800, 4, seed=7)
    probs[:5, 1] = 1.0  # the p = 1 bucket is a bucket of its own
    report = report_of(probs, y, mode)
    for c in range(4):
        expected = compute_curve((y == c).numpy().astype(np.int64), probs[:, c].numpy(), num_thresholds)
        curve = report.pr_curve(c, num_thresholds=num_thresholds)
        np.testing.assert_array_equal(np.stack(curve), expected)
        assert curve.tp[0] == (y == c).sum() and curve.fp[0] + curve.tp[0] == 800


def test_tensorboard_reads_the_pr_curve_back_from_the_event_file(tmp_path):
    probs, y = softmax_scores(300, 3, seed=4)
    curve = report_of(probs, y).pr_curve(1)
    with SummaryWriter(tmp_path) as writer:
        writer.add_pr_curve_raw("val/pr_curve/1", *curve, global_step=3, num_thresholds=len(curve.tp))
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    assert events.SummaryMetadata("val/pr_curve/1").plugin_data.plugin_name == "pr_curves"
    (event,) = events.Tensors("val/pr_curve/1")
    assert event.step == 3
    np.testing.assert_array_equal(make_ndarray(event.tensor_proto), np.stack(curve).astype(np.float32))


def test_pr_curve_refuses_a_class_or_a_threshold_count_it_cannot_give():
    probs, y = softmax_scores(40, 3, seed=0)
    report = report_of(probs, y)
    with pytest.raises(IndexError, match=r"class_index must be an int in \[0, 3\), got 3"):
        report.pr_curve(3)
    with pytest.raises(ValueError, match=r"num_thresholds must be one of \[2, 3, 4, 7, 8, 10, .*, 127\].*got 100"):
        report.pr_curve(0, num_thresholds=100)


def test_worst_classes_are_ordered_by_ap():
    probs, y = softmax_scores(600, 5, seed=2, absent=(3,))
    report = report_of(probs, y)
    worst = report.worst_classes(3)
    assert worst[0] == 3 and len(worst) == 3
    assert list(report.ap[worst]) == sorted(report.ap)[:3]


def test_the_budget_is_the_gathered_scores_in_bytes():
    probs, y = softmax_scores(100, 4, seed=1)
    size = 100 * 4 * 4  # N x C float32
    assert feed(ScoreMetric(4, memory_budget_bytes=size), probs, y).compute().mode == EXACT
    assert feed(ScoreMetric(4, memory_budget_bytes=size - 1), probs, y).compute().mode == HISTOGRAM


def test_switching_to_histograms_midway_loses_nothing():
    probs, y = softmax_scores(1000, 5, seed=4)
    midway = feed(ScoreMetric(5, memory_budget_bytes=300 * 5 * 4), probs, y)  # over the budget after ~300 rows
    assert midway._dropped and not midway._scores  # the scores were binned and freed when the budget ran out
    from_start = feed(ScoreMetric(5, memory_budget_bytes=0), probs, y)
    assert_same(midway.compute(), from_start.compute())


@pytest.mark.parametrize("mode", [EXACT, HISTOGRAM])
def test_compute_changes_nothing_and_batch_splits_do_not_matter(mode):
    probs, y = tied_scores(700, 5, seed=8)
    metric = feed(ScoreMetric(5, memory_budget_bytes=BUDGETS[mode]), probs, y)
    first = metric.compute()
    assert_same(metric.compute(), first)
    other_split = feed(ScoreMetric(5, memory_budget_bytes=BUDGETS[mode]), probs, y, sizes=(700,))
    assert_same(other_split.compute(), first)


def test_reset_forgets_everything_and_returns_to_exact_mode():
    big_probs, big_y = softmax_scores(500, 4, seed=1)
    small_probs, small_y = tied_scores(60, 4, seed=2)
    metric = feed(ScoreMetric(4, memory_budget_bytes=100 * 4 * 4), big_probs, big_y)
    assert metric.compute().mode == HISTOGRAM
    metric.reset()
    with pytest.raises(NotComputableError, match="at least one example"):
        metric.compute()
    report = feed(metric, small_probs, small_y).compute()
    assert report.mode == EXACT
    assert_same(report, feed(ScoreMetric(4, memory_budget_bytes=100 * 4 * 4), small_probs, small_y).compute())


@pytest.mark.parametrize("mode", [EXACT, HISTOGRAM])
def test_an_attached_metric_resets_every_epoch_and_publishes_its_scalars(mode):
    probs, y = softmax_scores(300, 4, seed=6, absent=(2,))
    data = list(zip(probs.split(64), y.split(64)))
    evaluator = Engine(lambda engine, batch: batch)
    ScoreMetric(4, class_names=["a", "b", "c", "d"], memory_budget_bytes=BUDGETS[mode]).attach(evaluator)
    evaluator.run(data, max_epochs=2)
    report = evaluator.state.metrics[SCORES]
    assert report.num_samples == 300  # the second epoch started from zero
    assert_same(report, report_of(probs, y, mode, class_names=["a", "b", "c", "d"]))
    assert {key: evaluator.state.metrics[key] for key in (AP_MACRO, ROC_AUC_MACRO, ECE)} == report.scalars()
    assert report.per_class.loc["c"].tolist()[::2] == [0.0, 0]  # ap, support of the class without samples
    evaluator.run(data[:2])  # a second validation replaces what the metric published
    assert evaluator.state.metrics[SCORES].num_samples == 128


def test_the_metric_never_overwrites_a_key_it_does_not_own():
    evaluator = Engine(lambda engine, batch: batch)
    ScoreMetric(2).attach(evaluator)

    @evaluator.on(Events.STARTED)
    def claim(engine):
        engine.state.metrics[ECE] = "someone else's"

    with pytest.raises(ValueError, match=r"would overwrite engine.state.metrics keys \['ece'\]"):
        evaluator.run([(torch.tensor([[0.4, 0.6]]), torch.tensor([1]))])
    with pytest.raises(ValueError, match="metric name 'ap_macro' collides with a scalar"):
        ScoreMetric(2).attach(Engine(lambda engine, batch: batch), name=AP_MACRO)


@pytest.mark.parametrize("mode", [EXACT, HISTOGRAM])
@pytest.mark.parametrize(("probs", "y", "message"), [
    (torch.tensor([[2.0, -1.0], [0.5, 0.5]]), torch.tensor([0, 1]),
     r"2 of 4 scores are not probabilities .* pass \(logits.softmax\(dim=1\), y\)"),
    (torch.tensor([[float("nan"), 0.5], [0.5, 0.5]]), torch.tensor([0, 1]), r"1 of 4 scores are not probabilities"),
    (torch.tensor([[0.5, 0.5], [0.5, 0.5]]), torch.tensor([0, 2]), r"1 targets are outside \[0, 2\)"),
    (torch.tensor([[0.5, 0.5], [0.5, 0.5]]), torch.tensor([-1, 0]), r"1 targets are outside \[0, 2\)"),
])
def test_bad_values_are_refused_when_computing(mode, probs, y, message):
    metric = ScoreMetric(2, memory_budget_bytes=BUDGETS[mode])
    metric.update((probs, y))  # values are not read back per batch: no host sync
    with pytest.raises(ValueError, match=message):
        metric.compute()


@pytest.mark.parametrize(("output", "error", "message"), [
    ((torch.rand(4, 3),), ValueError, r"expected output \(probs, y\), got tuple"),
    ((np.ones((4, 2)), torch.zeros(4)), TypeError, "probs and y must be torch.Tensor, got ndarray and Tensor"),
    ((torch.rand(4, 3), torch.zeros(4, dtype=torch.int64)), ValueError,
     r"probs must be float probabilities of shape \(B, 2\), got shape \(4, 3\)"),
    ((torch.zeros(4, 2, dtype=torch.int64), torch.zeros(4, dtype=torch.int64)), ValueError, "dtype torch.int64"),
    ((torch.rand(4, 2), torch.zeros(4)), ValueError, r"y must be integer class indices .* y.long\(\)"),
    ((torch.rand(4, 2), torch.zeros(3, dtype=torch.int64)), ValueError, "disagree on the batch size"),
])
def test_a_malformed_batch_is_refused_at_once(output, error, message):
    metric = ScoreMetric(2)
    with pytest.raises(error, match=message):
        metric.update(output)
    with pytest.raises(NotComputableError):  # and nothing of it was kept
        metric.compute()


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"num_classes": 0}, ValueError, "num_classes must be at least 1, got 0"),
    ({"num_classes": 2.0}, TypeError, "num_classes must be an int, got float 2.0"),
    ({"num_classes": 2, "class_names": ["a"]}, ValueError, "class_names has 1 names but num_classes is 2"),
    ({"num_classes": 2, "class_names": ["a", "a"]}, ValueError, "must be unique, non-blank strings"),
    ({"num_classes": 2, "class_names": "ab"}, TypeError, "class_names must be a sequence of names"),
    ({"num_classes": 2, "memory_budget_bytes": -1}, ValueError, "memory_budget_bytes must be at least 0, got -1"),
    ({"num_classes": 2, "bins": 1}, ValueError, "bins must be at least 2, got 1"),
    ({"num_classes": 10**6}, ValueError, "needs 4350000002 histogram counts, more than int32 indices reach"),
])
def test_bad_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        ScoreMetric(**kwargs)


def test_the_report_is_read_only():
    probs, y = softmax_scores(50, 3, seed=0)
    report = report_of(probs, y)
    with pytest.raises(ValueError, match="read-only"):
        report.ap[0] = 1.0
    table = report.per_class
    table.loc["0", "ap"] = 5.0  # a copy
    assert report.ap[0] != 5.0
    assert str(report).startswith("mAP ") and "(exact)" in str(report)


def test_the_reliability_diagram_is_a_png_of_the_asked_size():
    probs, y = softmax_scores(500, 4, seed=3)
    report = report_of(probs, y)
    for size in (320, 200):
        image = Image.open(io.BytesIO(reliability_png(report, size=size)))
        image.load()
        assert image.format == "PNG" and image.size == (size, size)
        pixels = np.asarray(image.convert("RGB"))
        assert (pixels[..., 2] > pixels[..., 0] + 80).sum() > 500  # the blue accuracy bars were drawn
    one_bin = report_of(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.tensor([0]))
    assert Image.open(io.BytesIO(reliability_png(one_bin, title="epoch 3"))).size == (320, 320)


def test_the_sort_of_other_devices_gives_the_same_report(monkeypatch):
    """Off the CPU the scores are sorted by torch, not numpy: the same keys, so the same bits."""
    probs, y = tied_scores(900, 5, seed=9)
    on_cpu = report_of(probs, y)
    monkeypatch.setattr(ranking, "_sort_descending", lambda keys: keys.sort(dim=1, descending=True).values)
    assert_same(report_of(probs, y), on_cpu)


def test_half_precision_probabilities_are_scored_as_float32():
    probs, y = softmax_scores(400, 4, seed=10)
    half = probs.half()
    assert_same(report_of(half, y), report_of(half.float(), y))
    assert_same(report_of(half, y.int(), HISTOGRAM), report_of(half.float(), y, HISTOGRAM))


@pytest.mark.parametrize("mode", [EXACT, HISTOGRAM])
def test_the_apps_evaluator_gets_nan_scores_for_nan_probabilities_instead_of_an_error(mode):
    # a diverged model: its finite-weights check reports it, naming the epoch; the metric must not raise first
    probs = torch.tensor([[float("nan"), 0.5], [0.5, 0.5], [0.2, 0.8]])
    metric = ScoreMetric(2, memory_budget_bytes=BUDGETS[mode], on_invalid="nan")
    metric.update((probs, torch.tensor([0, 1, 1])))
    report = metric.compute()
    assert np.isnan(report.ap).all() and np.isnan(report.roc_auc).all() and np.isnan(report.ece)
    assert report.support.tolist() == [1, 2] and report.num_samples == 3 and report.mode == mode
    metric.update((probs, torch.tensor([0, 1, 2])))
    with pytest.raises(ValueError, match=r"1 targets are outside \[0, 2\)"):  # bad labels are still refused
        metric.compute()
    with pytest.raises(ValueError, match="on_invalid must be 'raise' or 'nan', got 'skip'"):
        ScoreMetric(2, on_invalid="skip")
