"""ConfusionMatrixMetric and ClassificationReport against scikit-learn, alone, on an Engine and over 2 processes."""

from __future__ import annotations

import dataclasses

import ignite.distributed as idist
import numpy as np
import pytest
import torch
from conftest import free_port
from hypothesis import given, settings
from hypothesis import strategies as st
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from ignite.metrics import Accuracy
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from ignite_app.metrics import (
    ACCURACY,
    F1_MACRO,
    PRECISION_MACRO,
    RECALL_MACRO,
    REPORT,
    ClassificationReport,
    ConfusionMatrixMetric,
    read_label_map,
    write_label_map,
)
from ignite_app.metrics.topk import TOP5_ACCURACY, has_top_k, top_k_metrics

SCALARS = {ACCURACY, PRECISION_MACRO, RECALL_MACRO, F1_MACRO}


def names(c: int) -> list[str]:
    return [f"class {i}" for i in range(c)]


def make_data(c: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random targets (n,) and scores (n, c)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, c, (n,), generator=generator), torch.randn(n, c, generator=generator)


def feed(metric: ConfusionMatrixMetric, y_pred: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
    for start in range(0, len(y), batch_size):
        metric.update((y_pred[start : start + batch_size], y[start : start + batch_size]))


def assert_matches_sklearn(report: ClassificationReport, y: torch.Tensor, pred: torch.Tensor, c: int) -> None:
    y, pred, labels = y.numpy(), pred.numpy(), list(range(c))
    np.testing.assert_array_equal(report.matrix.to_numpy(), confusion_matrix(y, pred, labels=labels))
    assert report.matrix.dtypes.eq(np.int64).all()
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_class = report.per_class
    assert list(per_class.columns) == ["precision", "recall", "f1", "accuracy", "support"]
    assert list(per_class.index) == names(c)
    np.testing.assert_allclose(per_class["precision"], p, rtol=1e-12, atol=0)
    np.testing.assert_allclose(per_class["recall"], r, rtol=1e-12, atol=0)
    np.testing.assert_allclose(per_class["f1"], f, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(per_class["support"], s)
    mcm = multilabel_confusion_matrix(y, pred, labels=labels)  # (C, 2, 2): [[tn, fp], [fn, tp]] per class
    np.testing.assert_allclose(per_class["accuracy"], (mcm[:, 0, 0] + mcm[:, 1, 1]) / len(y), rtol=1e-12)
    for average in ("macro", "weighted"):
        expected = precision_recall_fscore_support(y, pred, labels=labels, average=average, zero_division=0)
        got = getattr(report, average)
        assert list(got) == ["precision", "recall", "f1"]
        np.testing.assert_allclose([got["precision"], got["recall"], got["f1"]], expected[:3], rtol=1e-12)
    assert report.accuracy == pytest.approx(accuracy_score(y, pred), rel=1e-12)


# --- agreement with scikit-learn ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["logits", "index"])
@pytest.mark.parametrize("c", [2, 3, 10, 50])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_matches_sklearn_for_any_batch_split(batch_size: int, c: int, form: str) -> None:
    y, scores = make_data(c, n=300, seed=c * 1000 + batch_size)
    pred = scores.argmax(dim=1)
    metric = ConfusionMatrixMetric(names(c))
    feed(metric, scores if form == "logits" else pred, y, batch_size)
    assert_matches_sklearn(metric.compute(), y, pred, c)


@pytest.mark.parametrize("form", ["logits", "index"])
@pytest.mark.parametrize("missing", ["targets", "predictions", "both"])
def test_classes_without_samples_or_predictions_count_as_zero(missing: str, form: str) -> None:
    c = 6
    y, scores = make_data(c, n=200, seed=3)
    if missing in ("targets", "both"):
        y = y % 3  # classes 3, 4, 5 have no samples
    if missing in ("predictions", "both"):
        scores[:, [0, 4]] = -1e9  # classes 0 and 4 are never predicted
    pred = scores.argmax(dim=1)
    metric = ConfusionMatrixMetric(names(c))
    feed(metric, scores if form == "logits" else pred, y, batch_size=16)
    assert_matches_sklearn(metric.compute(), y, pred, c)


def test_macro_mean_counts_empty_classes_unlike_the_tutorial() -> None:
    # class 1 is never right, class 2 has neither samples nor predictions: the tutorial skipped both and
    # reported macro precision 2/3; scikit-learn and this report average over all 3 classes.
    report = ClassificationReport.from_counts([[2, 0, 0], [1, 0, 0], [0, 0, 0]], ["a", "b", "c"])
    assert report.macro["precision"] == pytest.approx((2 / 3) / 3)
    assert report.macro["recall"] == pytest.approx(1 / 3)
    assert report.per_class.loc["c"].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")  # sklearn, when C = 1
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_property_any_predictions_match_sklearn(data: st.DataObject) -> None:
    c = data.draw(st.integers(1, 12), label="C")
    pairs = data.draw(st.lists(st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)), min_size=1, max_size=60))
    batch_size = data.draw(st.integers(1, 25), label="batch size")
    form = data.draw(st.sampled_from(["logits", "index"]), label="form")
    y = torch.tensor([t for t, _ in pairs])
    pred = torch.tensor([p for _, p in pairs])
    y_pred = torch.nn.functional.one_hot(pred, c).float() if form == "logits" else pred
    metric = ConfusionMatrixMetric(names(c))
    feed(metric, y_pred, y, batch_size)
    assert_matches_sklearn(metric.compute(), y, pred, c)


@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32, torch.uint64]
)
def test_targets_of_any_integer_dtype(dtype: torch.dtype) -> None:
    y, scores = make_data(5, n=50, seed=1)
    metric = ConfusionMatrixMetric(names(5))
    feed(metric, scores, y.to(dtype), batch_size=8)
    feed(metric, scores.argmax(dim=1).to(dtype), y.to(dtype), batch_size=8)
    assert_matches_sklearn(metric.compute(), torch.cat([y, y]), torch.cat([scores.argmax(dim=1)] * 2), 5)


def test_probabilities_one_row_and_empty_batches() -> None:
    metric = ConfusionMatrixMetric(["a", "b", "c"])
    metric.update((torch.tensor([[0.1, 0.7, 0.2]]), torch.tensor([1])))  # (1, C) scores, one target
    metric.update((torch.empty(0, 3), torch.empty(0, dtype=torch.long)))  # an empty batch changes nothing
    metric.update((torch.tensor([2]), torch.tensor([0])))  # (1,) index
    np.testing.assert_array_equal(metric.compute().counts, [[0, 0, 1], [0, 1, 0], [0, 0, 0]])


# --- state: compute, reset, resume ---------------------------------------------------------------------------


def test_compute_never_changes_the_state_and_reports_do_not_alias_it() -> None:
    metric = ConfusionMatrixMetric(["a", "b"])
    metric.update((torch.tensor([0, 1]), torch.tensor([0, 0])))
    first = metric.compute()
    assert metric.compute() == first
    metric.update((torch.tensor([1]), torch.tensor([1])))
    np.testing.assert_array_equal(first.counts, [[1, 1], [0, 0]])
    np.testing.assert_array_equal(metric.compute().counts, [[1, 1], [0, 1]])


def test_compute_without_samples_is_not_computable() -> None:
    metric = ConfusionMatrixMetric(["a", "b"])
    with pytest.raises(NotComputableError, match="at least one example"):
        metric.compute()
    metric.update((torch.empty(0, 2), torch.empty(0, dtype=torch.long)))
    with pytest.raises(NotComputableError, match="at least one example"):
        metric.compute()
    metric.update((torch.tensor([0]), torch.tensor([0])))
    metric.reset()
    with pytest.raises(NotComputableError, match="at least one example"):
        metric.compute()


def test_state_dict_resumes_the_counts() -> None:
    y, scores = make_data(4, n=40, seed=2)
    metric = ConfusionMatrixMetric(names(4))
    feed(metric, scores[:20], y[:20], batch_size=8)
    resumed = ConfusionMatrixMetric(names(4))
    resumed.load_state_dict(metric.state_dict())
    feed(resumed, scores[20:], y[20:], batch_size=8)
    assert_matches_sklearn(resumed.compute(), y, scores.argmax(dim=1), 4)


def test_state_dict_for_other_classes_is_refused() -> None:
    saved = ConfusionMatrixMetric(["a", "b", "c"])
    saved.update((torch.tensor([0, 1]), torch.tensor([1, 1])))
    metric = ConfusionMatrixMetric(["a", "b"])
    with pytest.raises(ValueError, match=r"counts of shape \(9,\), but this metric has 2 classes and needs shape \(4,"):
        metric.load_state_dict(saved.state_dict())
    with pytest.raises(NotComputableError):
        metric.compute()  # the refused counts were not kept


def test_loaded_counts_are_not_shared_with_the_state_dict() -> None:
    saved = ConfusionMatrixMetric(["a", "b"])
    saved.update((torch.tensor([0]), torch.tensor([0])))
    state = saved.state_dict()
    metric = ConfusionMatrixMetric(["a", "b"])
    metric.load_state_dict(state)
    metric.update((torch.tensor([1]), torch.tensor([1])))
    np.testing.assert_array_equal(saved.compute().counts, [[1, 0], [0, 0]])


# --- the report --------------------------------------------------------------------------------------------


def small_report() -> ClassificationReport:
    return ClassificationReport.from_counts(np.array([[5, 1, 0], [2, 3, 0], [0, 0, 1]]), ["cat", "dog", "b|rd"])


def test_report_is_immutable() -> None:
    report = small_report()
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.class_names = ("x", "y", "z")  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        report.counts[0, 0] = 99
    matrix, per_class, table, macro = report.matrix, report.per_class, report.table(), report.macro
    matrix.iloc[0, 0] = 99
    per_class.iloc[0, 0] = 99.0
    table.iloc[0, 0] = 99.0
    macro["precision"] = 99.0
    assert report == small_report() and report.macro == small_report().macro
    assert report.per_class.equals(small_report().per_class)


def test_from_counts_copies_its_input() -> None:
    counts = np.array([[1, 0], [0, 1]])
    report = ClassificationReport.from_counts(counts, ["a", "b"])
    counts[0, 0] = 50
    assert report.counts[0, 0] == 1 and report.class_names == ("a", "b")
    assert hash(report) == hash(ClassificationReport.from_counts(torch.eye(2, dtype=torch.long), ["a", "b"]))


def test_table_adds_macro_and_weighted_rows() -> None:
    report = small_report()
    table = report.table()
    assert list(table.index) == ["cat", "dog", "b|rd", "macro avg", "weighted avg"]
    assert list(table.columns) == ["precision", "recall", "f1", "accuracy", "support"]
    assert table.loc["macro avg", "precision"] == pytest.approx(report.macro["precision"])
    assert table.loc["weighted avg", "f1"] == pytest.approx(report.weighted["f1"])
    assert table.loc[["macro avg", "weighted avg"], "support"].tolist() == [12, 12]
    assert table.loc[["macro avg", "weighted avg"], "accuracy"].isna().all()
    assert report.scalars() == {
        ACCURACY: pytest.approx(9 / 12),
        PRECISION_MACRO: report.macro["precision"],
        RECALL_MACRO: report.macro["recall"],
        F1_MACRO: report.macro["f1"],
    }


def test_text_and_markdown() -> None:
    report = small_report()
    text = str(report)
    assert "confusion matrix (rows: true class, columns: predicted class)" in text
    assert "weighted avg" in text and text.endswith("accuracy 0.7500 over 12 samples")
    markdown = report.to_markdown()
    assert "| class | precision | recall | f1 | accuracy | support |" in markdown
    assert "| b\\|rd | 1.0000 | 1.0000 | 1.0000 | 1.0000 | 1 |" in markdown  # "|" escaped, not a new cell
    assert "| macro avg |" in markdown and "| true \\ predicted | cat | dog | b\\|rd |" in markdown
    big = ClassificationReport.from_counts(np.eye(40, dtype=np.int64), names(40))
    assert "40 x 40, left out" in str(big) and "40 x 40, left out" in big.to_markdown()
    assert "class 39" in big.to_markdown(with_matrix=True).splitlines()[-1]


@pytest.mark.parametrize(
    ("counts", "error", "match"),
    [
        ([[1, 0], [0, 1]], ValueError, r"counts must have shape \(3, 3\) for 3 class names, got shape \(2, 2\)"),
        (np.ones((3, 3)), ValueError, r"counts must be integers \(sample counts\), got dtype float64"),
        (-np.eye(3, dtype=int), ValueError, "counts must be non-negative, got minimum -1"),
        (np.zeros((3, 3), dtype=int), ValueError, "counts are all zero: a report needs at least one sample"),
    ],
)
def test_from_counts_rejects(counts: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ClassificationReport.from_counts(counts, ["a", "b", "c"])


# --- bad input -----------------------------------------------------------------------------------------------

LONG = torch.long


@pytest.mark.parametrize(
    ("output", "match"),
    [
        ((torch.randn(4, 3), torch.tensor([0, 1, 3, 2])), r"y holds class indices outside \[0, 3\): \[3\]"),
        ((torch.randn(2, 3), torch.tensor([-1, -1])), r"y holds class indices outside \[0, 3\): \[-1\]"),
        ((torch.tensor([0, 1]), torch.tensor([255, 3], dtype=torch.uint8)), r"y holds .* \[0, 3\): \[3, 255\]"),
        ((torch.tensor([0, 7]), torch.tensor([0, 1])), r"y_pred holds class indices outside \[0, 3\): \[7\]"),
        ((torch.randn(4, 5), torch.zeros(4, dtype=LONG)), r"y_pred has shape \(4, 5\) but the metric has 3 classes"),
        ((torch.randn(4, 3), torch.zeros(5, dtype=LONG)), r"y_pred has shape \(4, 3\), y has shape \(5,\)"),
        ((torch.tensor([0, 1]), torch.zeros(3, dtype=LONG)), r"batch size: y_pred has shape \(2,\), y has shape \(3,"),
        ((torch.randn(4, 3), torch.zeros(4)), r"y must be integer class indices .* dtype torch\.float32"),
        ((torch.randn(4, 3), torch.zeros(4, 1, dtype=LONG)), r"y must be .* shape \(B,\), got shape \(4, 1\)"),
        ((torch.tensor([0.0, 1.0]), torch.tensor([0, 1])), "a 1-D y_pred must hold integer class indices, got dtype"),
        ((torch.randn(2, 3, 1), torch.tensor([0, 1])), r"y_pred must have shape \(B, 3\) .* got shape \(2, 3, 1\)"),
        ((torch.ones(2, 3, dtype=torch.bool), torch.tensor([0, 1])), "scores must be real numbers, got dtype torch.bo"),
        ((torch.randn(2, 3),), r"expected output \(y_pred, y\), got tuple"),
    ],
)
def test_bad_update_raises_and_leaves_counts_alone(output: tuple, match: str) -> None:
    metric = ConfusionMatrixMetric(["a", "b", "c"])
    metric.update((torch.tensor([1]), torch.tensor([1])))
    with pytest.raises(ValueError, match=match):
        metric.update(output)
    np.testing.assert_array_equal(metric.compute().counts, [[0, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_update_rejects_non_tensors() -> None:
    with pytest.raises(TypeError, match="y_pred and y must be torch.Tensor, got list and Tensor"):
        ConfusionMatrixMetric(["a", "b"]).update(([0, 1], torch.tensor([0, 1])))


@pytest.mark.parametrize(
    ("class_names", "error", "match"),
    [
        ([], ValueError, "class_names is empty"),
        (["a", "b", "a"], ValueError, r"class_names\[2\] = 'a' repeats class_names\[0\]: names must be unique"),
        (["a", "  "], ValueError, r"class_names\[1\] is blank"),
        (["a", "b\nc"], ValueError, r"class_names\[1\] = 'b\\nc' contains a line break"),
        (["a", 1], TypeError, r"class_names\[1\] must be a str, got int"),
        ("abc", TypeError, "class_names must be a sequence of class names"),
    ],
)
def test_bad_class_names(class_names: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ConfusionMatrixMetric(class_names)  # type: ignore[arg-type]


# --- on an Engine --------------------------------------------------------------------------------------------


def evaluator_with(*metrics: tuple[object, str]) -> Engine:
    evaluator = Engine(lambda engine, batch: batch)
    for metric, name in metrics:
        metric.attach(evaluator, name)  # type: ignore[attr-defined]
    return evaluator


def test_engine_gets_the_report_and_flat_scalars_only() -> None:
    y, scores = make_data(4, n=64, seed=5)
    batches = list(zip(scores.split(10), y.split(10)))
    metric = ConfusionMatrixMetric(names(4))
    evaluator = Engine(lambda engine, batch: {"y_pred": batch[0], "y": batch[1]})
    metric.attach(evaluator)  # default name REPORT
    for _ in range(2):  # a second run overwrites this metric's own keys without complaint
        evaluator.run(batches, max_epochs=1)
    metrics = evaluator.state.metrics
    assert set(metrics) == SCALARS | {REPORT}
    assert metrics[REPORT] == ClassificationReport.from_counts(confusion_matrix(y, scores.argmax(1)), names(4))
    assert metrics[REPORT].scalars() == {key: metrics[key] for key in SCALARS}
    assert all(type(metrics[key]) is float for key in SCALARS)


def test_refuses_to_overwrite_a_key_written_before_it() -> None:
    evaluator = evaluator_with((Accuracy(), ACCURACY), (ConfusionMatrixMetric(["a", "b"]), REPORT))
    with pytest.raises(ValueError, match=r"'report' would overwrite engine.state.metrics keys \['accuracy'\]"):
        evaluator.run([(torch.randn(4, 2), torch.tensor([0, 1, 1, 0]))])


def test_refuses_to_overwrite_a_key_written_after_it_on_the_next_epoch() -> None:
    evaluator = evaluator_with((ConfusionMatrixMetric(["a", "b"]), "cm"), (Accuracy(), F1_MACRO))
    with pytest.raises(ValueError, match=r"'cm' would overwrite engine.state.metrics keys \['f1_macro'\]"):
        evaluator.run([(torch.randn(4, 2), torch.tensor([0, 1, 1, 0]))], max_epochs=2)


def test_refuses_a_name_that_is_one_of_its_scalars() -> None:
    with pytest.raises(ValueError, match="metric name 'f1_macro' collides with a scalar this metric publishes"):
        ConfusionMatrixMetric(["a", "b"]).attach(Engine(lambda engine, batch: batch), F1_MACRO)


# --- label maps ----------------------------------------------------------------------------------------------


def test_label_map_round_trip(tmp_path) -> None:
    path = tmp_path / "label_map.txt"
    write_label_map(path, ["고양이", "dog", " spaced name "])
    assert path.read_bytes() == "고양이\ndog\n spaced name \n".encode()
    assert read_label_map(path) == ["고양이", "dog", " spaced name "]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_label_map_accepts_bom_crlf_and_no_final_newline(tmp_path) -> None:
    path = tmp_path / "label_map.txt"
    path.write_bytes(b"\xef\xbb\xbfcat\r\ndog")
    assert read_label_map(path) == ["cat", "dog"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty: expected one class name per line"),
        ("cat\n\ndog\n", r"line 2 \(class 1\) is blank"),
        ("cat\ndog\n\n", r"line 3 \(class 2\) is blank"),
        ("cat\ndog\n  \n", r"line 3 \(class 2\) is blank"),
        ("cat\ndog\ncat\n", "line 3 repeats 'cat' from line 1; class names must be unique"),
    ],
)
def test_bad_label_map(tmp_path, text: str, match: str) -> None:
    path = tmp_path / "label_map.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        read_label_map(path)


def test_write_label_map_rejects_names_it_could_not_read_back(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"names\[1\] = 'a' repeats names\[0\]"):
        write_label_map(tmp_path / "label_map.txt", ["a", "a"])
    assert not (tmp_path / "label_map.txt").exists()


# --- devices and processes -----------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_counts_on_cuda_match_sklearn() -> None:
    y, scores = make_data(7, n=100, seed=9)
    metric = ConfusionMatrixMetric(names(7), device="cuda")
    feed(metric, scores.cuda(), y, batch_size=16)  # scores on the GPU, targets on the CPU
    feed(metric, scores.argmax(dim=1), y.cuda(), batch_size=16)
    assert metric._counts.device.type == "cuda"
    assert_matches_sklearn(metric.compute(), torch.cat([y, y]), torch.cat([scores.argmax(dim=1)] * 2), 7)
    with pytest.raises(ValueError, match=r"y holds class indices outside \[0, 7\): \[7\]"):
        metric.update((scores[:2].cuda(), torch.tensor([0, 7], device="cuda")))


N_DIST, C_DIST = 250, 6


def _check_two_ranks(local_rank: int) -> None:
    """Each rank sees a different shard of different size; every rank must get the full data's report."""
    rank = idist.get_rank()
    y, scores = make_data(C_DIST, N_DIST, seed=11)
    expected = ClassificationReport.from_counts(
        confusion_matrix(y, scores.argmax(dim=1), labels=range(C_DIST)), names(C_DIST)
    )
    shard = slice(0, 100) if rank == 0 else slice(100, N_DIST)
    metric = ConfusionMatrixMetric(names(C_DIST))
    feed(metric, scores[shard], y[shard], batch_size=7 if rank == 0 else 13)
    local = metric._counts.clone()
    assert metric.compute() == expected
    assert metric.compute() == expected  # a second compute reduces the local counts again, not the sum
    assert torch.equal(metric._counts, local)
    # the same through an evaluator, the way the app uses it
    evaluator = evaluator_with((ConfusionMatrixMetric(names(C_DIST)), REPORT),
                               (top_k_metrics(C_DIST)[TOP5_ACCURACY], TOP5_ACCURACY))
    evaluator.run(list(zip(scores[shard].split(16), y[shard].split(16))))
    assert evaluator.state.metrics[REPORT] == expected
    assert evaluator.state.metrics[ACCURACY] == expected.accuracy
    # top-5 over both shards: the exact count of the whole data, as scikit-learn computes it
    assert evaluator.state.metrics[TOP5_ACCURACY] == top_k_accuracy_score(y, scores, k=5, labels=range(C_DIST))


def test_two_gloo_ranks_reduce_to_the_single_process_report() -> None:
    # a free port, so that concurrent test runs on one machine do not meet on ignite's default port
    with idist.Parallel(backend="gloo", nproc_per_node=2, master_addr="127.0.0.1", master_port=free_port()) as p:
        p.run(_check_two_ranks)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_top5_accuracy_equals_scikit_learns_for_any_batch_split(batch_size: int) -> None:
    y, scores = make_data(12, n=300, seed=3)
    evaluator = evaluator_with((top_k_metrics(12)[TOP5_ACCURACY], TOP5_ACCURACY))
    evaluator.run(list(zip(scores.split(batch_size), y.split(batch_size))))
    assert evaluator.state.metrics[TOP5_ACCURACY] == top_k_accuracy_score(y, scores, k=5, labels=range(12))
    assert has_top_k(6) and not has_top_k(5) and top_k_metrics(5) == {}  # with 5 classes it would always be 1
