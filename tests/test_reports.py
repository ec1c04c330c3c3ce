"""The report outputs as plain functions: heatmaps, CSV files, history.csv."""

import csv
import io
import math

import numpy as np
import pytest
from PIL import Image

from ignite_app import reports
from ignite_app.handlers import EpochRecord
from ignite_app.metrics import ClassificationReport
from ignite_app.reports import (
    HISTORY_COLUMNS,
    MAX_TICK_LABELS,
    classification_report_csv,
    confusion_matrix_csv,
    heatmap_figure,
    heatmap_png,
    history_row,
    png_size,
    read_history,
    report_markdown,
    write_history,
    write_report_files,
)

NAMES = ("cat", "dog, large", "bird|sparrow")
COUNTS = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])


@pytest.fixture
def report():
    return ClassificationReport.from_counts(COUNTS, NAMES)


def random_counts(c, seed=0, total=None):
    counts = np.random.default_rng(seed).integers(0, 20, (c, c)) + 50 * np.eye(c, dtype=np.int64)
    if total is not None:  # same total, other cells: what the validations of one run look like
        counts = counts[np.random.default_rng(seed + 1).permutation(c)]
    return counts


def read_csv(text):
    return list(csv.reader(io.StringIO(text)))


def test_confusion_matrix_csv_has_the_corner_cell_names_and_one_row_per_true_class(report):
    text = confusion_matrix_csv(report)
    assert text.splitlines()[0] == 'true\\predicted,cat,"dog, large",bird|sparrow'  # the comma is quoted
    assert read_csv(text) == [["true\\predicted", *NAMES],
                              ["cat", "5", "1", "0"], ["dog, large", "2", "3", "1"], ["bird|sparrow", "0", "0", "4"]]


def test_classification_report_csv_lists_each_class_then_macro_and_weighted(report):
    rows = read_csv(classification_report_csv(report))
    assert rows[0] == ["class", "precision", "recall", "f1", "accuracy", "support"]
    assert [r[0] for r in rows[1:]] == [*NAMES, "macro avg", "weighted avg"]
    table = report.table()
    for row in rows[1:]:
        expected = table.loc[row[0]]
        for column, cell in zip(["precision", "recall", "f1"], row[1:4]):
            assert float(cell) == expected[column]  # exact: written with repr
        assert row[5] == str(int(expected["support"]))
    assert [r[4] for r in rows[-2:]] == ["", ""]  # no averaged one-vs-rest accuracy
    assert float(rows[1][4]) == report.per_class.loc["cat", "accuracy"]
    assert rows[-1][5] == "16"


def test_report_markdown_is_a_table_with_both_averages_accuracy_and_support(report):
    text = report_markdown(report)
    lines = text.splitlines()
    assert lines[0] == "| class | precision | recall | f1 | accuracy | support |"
    assert lines[1] == "|---|---:|---:|---:|---:|---:|"
    assert lines[2] == "| cat | 0.7143 | 0.8333 | 0.7692 | 0.8125 | 6 |"
    assert lines[4].startswith("| bird\\|sparrow |")  # an escaped "|" does not end the cell
    assert lines[5].startswith("| macro avg |") and lines[5].endswith("|  | 16 |")
    assert lines[6].startswith("| weighted avg |")
    assert lines[-1] == "**accuracy** 0.7500 over 16 samples"


def test_write_report_files_replaces_the_three_files(tmp_path, report):
    folder = tmp_path / "reports"
    paths = write_report_files(folder, report, b"\x89PNG fake")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths) == [
        "classification_report.csv", "confusion_matrix.csv", "confusion_matrix.png"]
    assert (folder / "confusion_matrix.csv").read_text() == confusion_matrix_csv(report)
    reports.remove_report_files(folder)
    assert list(folder.iterdir()) == []


def cell_texts(fig):
    return [t.get_text() for t in fig.axes[0].texts]


def test_a_ten_class_heatmap_writes_each_count_in_its_cell_and_names_every_class():
    counts = random_counts(10)
    names = [f"digit {i}" for i in range(10)]
    fig = heatmap_figure(counts, names)
    assert cell_texts(fig) == [str(v) for v in counts.ravel()]  # row-major: row = true class
    ax = fig.axes[0]
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")


def test_the_normalized_heatmap_shows_each_rows_share_with_recall_on_the_diagonal(report):
    fig = heatmap_figure(COUNTS, NAMES, normalize=True)
    texts = np.array(cell_texts(fig)).reshape(3, 3)
    assert list(texts.diagonal()) == [f"{r:.2f}" for r in report.per_class["recall"]]
    assert texts[1].tolist() == ["0.33", "0.50", "0.17"]
    assert fig.axes[0].images[0].get_clim() == (0.0, 1.0)


def test_a_hundred_class_heatmap_has_no_cell_text_and_thinned_ticks():
    names = [f"class_{i}" for i in range(100)]
    fig = heatmap_figure(random_counts(100), names)
    fig.canvas.draw()
    assert cell_texts(fig) == []
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert 10 <= len(labels) <= MAX_TICK_LABELS and labels[:2] == ["class_0", "class_4"]



@pytest.mark.parametrize(("c", "annotate", "texts"), [(30, None, 900), (31, None, 0), (31, True, 961), (3, False, 0)])
def test_cells_are_annotated_up_to_30_classes_unless_asked_otherwise(c, annotate, texts):
    assert len(heatmap_figure(random_counts(c), [str(i) for i in range(c)], annotate=annotate).axes[0].texts) == texts


def test_heatmap_png_decodes_with_a_size_that_grows_with_the_classes_up_to_a_limit():
    small = Image.open(io.BytesIO(heatmap_png(COUNTS, NAMES)))
    large = Image.open(io.BytesIO(heatmap_png(random_counts(100), [str(i) for i in range(100)])))
    assert small.format == "PNG" and small.mode == "RGB" and small.size == (500, 500)
    assert large.size == (1000, 1000)
    assert png_size(heatmap_png(COUNTS, NAMES)) == (500, 500)
    pixels = np.asarray(small)
    assert pixels.min() < 100 < 200 < pixels.max()  # dark cells and a white background: something was drawn


def test_heatmap_png_gives_the_same_bytes_whatever_was_drawn_before(monkeypatch):
    names = [str(i) for i in range(10)]
    a, b = random_counts(10, seed=1), random_counts(10, seed=1, total=True)
    first = heatmap_png(a, names, title="epoch 1")
    assert heatmap_png(b, names, title="epoch 2") != first
    assert heatmap_png(a, names, title="epoch 1") == first
    # a fresh process (a resumed run) that draws another epoch first
    monkeypatch.setattr(reports, "_figures", type(reports._figures)())
    heatmap_png(b, names, title="epoch 2")
    assert heatmap_png(a, names, title="epoch 1") == first


@pytest.mark.parametrize(("c", "normalize"), [(10, False), (10, True), (40, False)])
def test_heatmap_png_draws_the_same_pixels_as_a_full_drawing(c, normalize):
    names = [f"c{i}" for i in range(c)]
    counts, earlier = random_counts(c, seed=2), random_counts(c, seed=2, total=True)
    heatmap_png(earlier, names, normalize=normalize, title="epoch 1")  # the cached figure shows other numbers
    blitted = np.asarray(Image.open(io.BytesIO(heatmap_png(counts, names, normalize=normalize, title="epoch 2"))))
    full = reports.figure_array(heatmap_figure(counts, names, normalize=normalize, title="epoch 2"))
    assert blitted.shape == full.shape and np.array_equal(blitted, full)


def test_the_colour_scale_is_fixed_by_the_class_sizes_not_the_predictions():
    image = heatmap_figure(COUNTS, NAMES).axes[0].images[0]
    assert image.get_clim() == (0.0, 6.0)  # the largest class has 6 samples


def test_heatmap_refuses_counts_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"counts must have shape \(2, 2\) for 2 class names, got shape \(3, 3\)"):
        heatmap_png(COUNTS, ["a", "b"])


def test_png_size_refuses_other_data():
    with pytest.raises(ValueError, match="not PNG data: it starts with b'GIF89a"):
        png_size(b"GIF89a" + bytes(30))


def record(epoch, seconds=1.23456):
    return EpochRecord(epoch=epoch, train_loss=1 / 3, val_loss=0.5, val_accuracy=0.9, precision_macro=0.8,
                       recall_macro=0.7, f1_macro=0.75, lr=3e-3, seconds=seconds)


def test_history_rows_are_exact_except_seconds():
    assert history_row(record(2)) == ["2", "0.3333333333333333", "0.5", "0.9", "0.8", "0.7", "0.75", "0.003",
                                      "1.235"]
    assert len(HISTORY_COLUMNS) == 9 and HISTORY_COLUMNS[0] == "epoch" and HISTORY_COLUMNS[-1] == "seconds"


def test_read_history_keeps_the_epochs_a_checkpoint_includes(tmp_path):
    path = tmp_path / "history.csv"
    assert read_history(path, 3) == []
    write_history(path, [history_row(record(e)) for e in (1, 2, 3)])
    assert path.read_text().splitlines()[0] == ",".join(HISTORY_COLUMNS)
    assert [row[0] for row in read_history(path, 2)] == ["1", "2"]
    assert read_history(path, 0) == []
    assert read_history(path, 5) == [history_row(record(e)) for e in (1, 2, 3)]


def test_read_history_refuses_a_file_of_another_format(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("step,loss\n1,0.5\n")
    with pytest.raises(ValueError, match="does not start with the header epoch,train_loss,.*move it away"):
        read_history(path, 1)


def test_nan_scores_are_empty_cells():
    assert reports._number(math.nan) == "" and reports._number(np.float64(0.25)) == "0.25"
