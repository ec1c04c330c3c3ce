"""The report outputs as plain functions: heatmaps, CSV files, history.csv."""

import csv
import io
import math
from concurrent.futures import ThreadPoolExecutor

import matplotlib
import numpy as np
import pytest
from matplotlib.font_manager import FontProperties, findfont
from PIL import Image, ImageDraw, ImageFont

from ignite_app.reporting import heatmap
from ignite_app.reporting import writers as reports
from ignite_app.handlers import EpochRecord
from ignite_app.reporting.heatmap import DPI, MAX_TICK_LABELS, heatmap_figure, heatmap_png
from ignite_app.metrics import ClassificationReport
from ignite_app.reporting.writers import (
    HISTORY_COLUMNS,
    classification_report_csv,
    confusion_matrix_csv,
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


# --- the heatmap: matplotlib's whole drawing (heatmap_figure) and the painted PNG (heatmap_png) ------------------


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


def test_the_colour_scale_is_fixed_by_the_class_sizes_not_the_predictions():
    image = heatmap_figure(COUNTS, NAMES).axes[0].images[0]
    assert image.get_clim() == (0.0, 6.0)  # the largest class has 6 samples


def confident_counts(c, seed=0):
    """Most samples on the diagonal: dark diagonal cells (white numbers), light ones elsewhere (black numbers)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4, (c, c)) + np.diag(rng.integers(60, 90, c))


def decoded(png):
    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


def reference(counts, names, **kwargs):
    """matplotlib's whole drawing, and its cells' edges in pixels: column j spans xs[j]..xs[j + 1], row i
    ys[i]..ys[i + 1]."""
    fig = heatmap_figure(counts, names, **kwargs)
    pixels = heatmap.figure_array(fig).astype(int)
    edges = fig.axes[0].transData.transform(np.column_stack([np.arange(len(names) + 1) - 0.5] * 2))
    return pixels, edges[:, 0], pixels.shape[0] - edges[:, 1]


def cell(pixels, xs, ys, i, j, margin=2):
    """The inside of cell (i, j), ``margin`` pixels away from its edges."""
    return pixels[math.ceil(ys[i]) + margin:math.floor(ys[i + 1]) - margin,
                  math.ceil(xs[j]) + margin:math.floor(xs[j + 1]) - margin]


def colours(values, vmax):
    """The colour matplotlib gives each value: (C, C, 3)."""
    return matplotlib.colormaps["Blues"](np.asarray(values) / vmax, bytes=True)[..., :3].astype(int)


def ink(patch, background):
    """How far each pixel of ``patch`` is from ``background``, cropped to the text (the pixels more than 40 away)."""
    distance = np.abs(patch - background).max(axis=2)
    ys, xs = np.nonzero(distance > 40)
    return distance[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(ys) else distance[:0, :0]


def ink_centre(patch, background):
    y, x = np.nonzero(np.abs(patch - background).max(axis=2) > 40)
    return y.mean(), x.mean()


def shows(patch, background, text, fill, points=9):
    """Whether ``patch`` shows ``text`` in ``fill``: its ink matches ``text`` drawn by Pillow in matplotlib's font
    (a mean difference under 5 of 255; another number differs by 25 or more)."""
    font = ImageFont.truetype(findfont(FontProperties()), points * DPI / 72)
    expected = Image.new("RGB", patch.shape[1::-1], tuple(map(int, background)))
    ImageDraw.Draw(expected).text((patch.shape[1] // 2, patch.shape[0] // 2), text, fill=fill, font=font, anchor="mm")
    got, want = ink(patch, background), ink(np.asarray(expected).astype(int), background)
    return got.size > 0 and got.shape == want.shape and np.abs(got - want).mean() < 5


@pytest.mark.parametrize(("c", "normalize", "title"), [(10, False, ""), (10, True, "epoch 2"), (40, True, ""),
                                                       (100, False, "epoch 2")])
def test_heatmap_png_without_numbers_is_matplotlibs_drawing(c, normalize, title):
    # frame, cells, colour bar, class names: the spines are blended over the cells by a formula of our own, which
    # may round the other way (1 of 255)
    names = [f"class_{i}" for i in range(c)]
    counts = confident_counts(c)
    heatmap_png(counts[::-1], names, normalize=normalize, annotate=False, title=title)  # same classes, other numbers
    painted = decoded(heatmap_png(counts, names, normalize=normalize, annotate=False, title=title))
    full, xs, ys = reference(counts, names, normalize=normalize, annotate=False, title=title)
    assert painted.shape == full.shape
    below_title = slice(math.floor(ys[0]) - 2, None)  # the title is Pillow's: see the next test
    difference = np.abs(painted[below_title] - full[below_title])
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01


def test_cells_are_found_past_the_number_a_probe_image_tells_apart(monkeypatch):
    monkeypatch.setattr(heatmap, "_PROBE_WRAP", 16)  # as 4096 does past 4096 classes
    monkeypatch.setattr(heatmap, "_frames", type(heatmap._frames)())
    names = [str(i) for i in range(40)]
    counts = confident_counts(40)
    painted = decoded(heatmap_png(counts, names, annotate=False))
    assert np.abs(painted - reference(counts, names, annotate=False)[0]).max() <= 1


def test_the_title_is_written_above_the_matrix_where_matplotlib_writes_it():
    names = [str(i) for i in range(10)]
    counts = confident_counts(10)
    title = "epoch 12: accuracy 93.33% over 360 samples"
    painted = decoded(heatmap_png(counts, names, title=title))
    full, _, ys = reference(counts, names, title=title)
    above = slice(0, math.floor(ys[0]) - 2)

    def text_box(pixels):
        y, x = np.nonzero(pixels[above].max(axis=2) < 128)
        return y.min(), y.max(), x.min(), x.max()

    assert np.allclose(text_box(painted), text_box(full), atol=4)  # Pillow's letters are spaced a little tighter
    assert not np.array_equal(decoded(heatmap_png(counts, names, title="epoch 13"))[above], painted[above])


@pytest.mark.parametrize("normalize", [False, True])
def test_a_ten_class_heatmap_png_shows_each_value_in_its_cells_colour_white_on_dark_cells(report, normalize):
    names = [f"digit {i}" for i in range(10)]
    counts = confident_counts(10)
    painted = decoded(heatmap_png(counts, names, normalize=normalize, title="epoch 2"))
    full, xs, ys = reference(counts, names, normalize=normalize, title="epoch 2")
    shares = counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(shares.diagonal(), ClassificationReport.from_counts(counts, names).per_class["recall"])
    values, vmax = (shares, 1.0) if normalize else (counts, counts.sum(axis=1).max())  # the largest class's size
    dark, background = values > vmax / 2, colours(values, vmax)
    assert 0 < dark.sum() < 100
    for i, j in np.ndindex(10, 10):
        patch = cell(painted, xs, ys, i, j)
        assert (patch[:3, :3] == background[i, j]).all()  # a corner, away from the number
        text = f"{values[i, j]:.2f}" if normalize else str(counts[i, j])
        assert shows(patch, background[i, j], text, "white" if dark[i, j] else "black"), (i, j, text)
        # where matplotlib writes it, within 2 pixels (it places letters to 1/64 pixel, Pillow to whole pixels)
        full_patch = cell(full, xs, ys, i, j)
        assert np.allclose(ink_centre(patch, background[i, j]), ink_centre(full_patch, background[i, j]), atol=2)


@pytest.mark.parametrize(("c", "annotate", "numbers"), [(100, None, False), (31, None, False), (31, True, True),
                                                        (30, None, True), (10, False, False)])
def test_heatmap_png_shows_numbers_up_to_30_classes_unless_asked_otherwise(c, annotate, numbers):
    names = [str(i) for i in range(c)]
    counts = confident_counts(c)
    painted = decoded(heatmap_png(counts, names, annotate=annotate))
    _, xs, ys = reference(counts, names, annotate=False)
    background = colours(counts, counts.sum(axis=1).max())
    plain = [(cell(painted, xs, ys, i, j) == background[i, j]).all() for i, j in np.ndindex(c, c)]
    assert (not any(plain)) if numbers else all(plain)


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
    monkeypatch.setattr(heatmap, "_frames", type(heatmap._frames)())
    heatmap._cell_mask.cache_clear()
    heatmap_png(b, names, title="epoch 2")
    assert heatmap_png(a, names, title="epoch 1") == first


def test_heatmap_png_draws_the_same_images_from_several_threads(monkeypatch):
    kinds = [(confident_counts(10), [f"c{i}" for i in range(10)], normalize) for normalize in (False, True)]
    expected = [heatmap_png(counts, names, normalize=normalize, title="t") for counts, names, normalize in kinds]
    monkeypatch.setattr(heatmap, "_frames", type(heatmap._frames)())  # the threads build the frames again
    with ThreadPoolExecutor(4) as pool:
        drawn = list(pool.map(lambda kind: heatmap_png(kind[0], kind[1], normalize=kind[2], title="t"), kinds * 4))
    assert drawn == expected * 4


def test_heatmap_refuses_counts_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"counts must have shape \(2, 2\) for 2 class names, got shape \(3, 3\)"):
        heatmap_png(COUNTS, ["a", "b"])


def test_png_size_refuses_other_data():
    with pytest.raises(ValueError, match="not PNG data: it starts with b'GIF89a"):
        png_size(b"GIF89a" + bytes(30))


def record(epoch, seconds=1.23456):
    return EpochRecord(epoch=epoch, train_loss=1 / 3, val_loss=0.5, val_accuracy=0.9, precision_macro=0.8,
                       recall_macro=0.7, f1_macro=0.75, lr=3e-3, seconds=seconds, ap_macro=0.85,
                       roc_auc_macro=0.95, ece=0.125)


def test_history_rows_are_exact_except_seconds():
    assert history_row(record(2)) == ["2", "0.3333333333333333", "0.5", "0.9", "0.8", "0.7", "0.75", "0.85", "0.95",
                                      "0.125", "0.003", "1.235"]
    assert len(HISTORY_COLUMNS) == 12 and HISTORY_COLUMNS[0] == "epoch" and HISTORY_COLUMNS[-1] == "seconds"
    assert HISTORY_COLUMNS[7:10] == ("ap_macro", "roc_auc_macro", "ece")


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
