"""Folder datasets in-process: layouts, label maps, the split, every bad-data refusal, deterministic augmentation,
unreadable images met at load time."""

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import ignite.distributed as idist
import pytest
import torch
from conftest import free_port
from folder_data import write_digit_folders
from PIL import Image
from torchvision.transforms import v2

import ignite_app.data.imagecheck as imagecheck
from ignite_app.config import ConfigError, TrainConfig
from ignite_app.data import EpochBatchSampler, SampleKey, build_data, build_loaders
from ignite_app.data.decode import decode_image
from ignite_app.data.imagecheck import check_images
from ignite_app.data.pipeline import ImageDataset, ImageLoader
from ignite_app.data.samplers import stratified_split
from ignite_app.data.scan import checkpoint_classes, label_map_classes, scan_folder
from ignite_app.data.stats import sample_pixel_stats
from ignite_app.data.transforms import EvalTransform
from ignite_app.errors import DataError


def folder_config(data_dir, **kwargs):
    return TrainConfig(dataset="folder", data_dir=data_dir, image_size=8, channels=1, **{"num_workers": 0, **kwargs})


def paths(dataset):
    return [path for path, _ in dataset.table.items()]


def labels(dataset):
    return dataset.table.labels.tolist()


@pytest.fixture
def split_dir(tmp_path):
    """DIR/train/digit{0..3} (6 images each) and DIR/val/digit{0..3} (2 each)."""
    return write_digit_folders(tmp_path / "data", train=6, val=2)


@pytest.fixture
def flat_dir(tmp_path):
    """DIR/digit{0..3}, 10 images each."""
    return write_digit_folders(tmp_path / "flat", train=10, val=0, flat=True)


def write_label_map(path, *names):
    path.write_text("".join(f"{n}\n" for n in names))
    return path


def test_a_split_layout_gives_sorted_classes_and_training_statistics(split_dir):
    data = build_data(folder_config(split_dir))
    assert data.classes == ("digit0", "digit1", "digit2", "digit3")
    assert (len(data.train), len(data.val)) == (24, 8) and data.input_shape == (1, 8, 8)
    assert isinstance(data.train, ImageDataset) and data.train.takes_sample_seeds  # augment: on for folders
    assert not data.val.takes_sample_seeds
    # the validation view of each training image (short side to ceil(8 / 0.875) = 10, centre 8x8), all 24 of
    # them: the seeded sample takes min(--stats-images, 24)
    view = v2.Compose([v2.Resize(10, antialias=True), v2.CenterCrop(8)])
    images = torch.stack([view(decode_image(p, 1)) for p in paths(data.train)]).double() / 255
    assert data.mean == pytest.approx([images.mean().item()], rel=1e-9) and data.stats_images == 24
    assert data.std == pytest.approx([images.std().item()], rel=1e-9)
    assert data.crop_fraction == 0.875
    x, y = data.val[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.uint8 and y == 0


def test_the_label_map_order_sets_the_class_indices(split_dir, tmp_path):
    label_map = write_label_map(tmp_path / "labels.txt", "digit3", "digit1", "digit0", "digit2")
    data = build_data(folder_config(split_dir, label_map=label_map))
    assert data.classes == ("digit3", "digit1", "digit0", "digit2")
    for path, label in data.val.table.items():
        assert data.classes[label] == Path(path).parent.name
    assert Counter(labels(data.val)) == {0: 2, 1: 2, 2: 2, 3: 2}


def test_a_flat_layout_is_split_per_class_the_same_way_for_every_seed(flat_dir):
    first = build_data(folder_config(flat_dir, val_split=0.3))
    again = build_data(folder_config(flat_dir, val_split=0.3, seed=7))
    assert Counter(labels(first.val)) == {0: 3, 1: 3, 2: 3, 3: 3}  # stratified: 30% of each class
    assert paths(first.val) == paths(again.val) and paths(first.train) == paths(again.train)
    assert set(paths(first.val)).isdisjoint(paths(first.train)) and len(first.train) + len(first.val) == 40
    # --seed is ignored because the split has its own fixed seed, not because the split ignores seeds:
    # another split seed holds out other images of the same files.
    digit0 = sorted((flat_dir / "digit0").iterdir())
    held_out = [str(p) for p in stratified_split({"digit0": digit0}, 0.3)[1]["digit0"]]
    assert paths(first.val)[:3] == held_out
    assert [str(p) for p in stratified_split({"digit0": digit0}, 0.3, seed=1)[1]["digit0"]] != held_out


def test_the_split_keeps_each_class_on_both_sides_when_it_can():
    files = {"one": [Path("a.png")], "two": [Path("a.png"), Path("b.png")], "many": [Path(f"{i}.png")
                                                                                  for i in range(100)]}
    train, val = stratified_split(files, 0.01)
    assert (len(train["one"]), len(val["one"])) == (1, 0)  # a single image trains
    assert (len(train["two"]), len(val["two"])) == (1, 1)
    assert (len(train["many"]), len(val["many"])) == (99, 1)
    before = stratified_split({"two": files["two"]}, 0.5)[1]["two"]
    assert stratified_split({**files, "new": [Path("x.png")] * 3}, 0.5)[1]["two"] == before  # per-class streams


def test_non_images_and_hidden_files_are_ignored_and_subfolders_are_searched(split_dir):
    (split_dir / "train" / "digit0" / "notes.txt").write_text("not an image")
    (split_dir / "train" / "digit0" / ".hidden.png").write_bytes(b"broken")
    nested = split_dir / "train" / "digit0" / "more"
    nested.mkdir()
    Image.new("L", (8, 8)).save(nested / "extra.PNG")
    (split_dir / "train" / ".cache").mkdir()
    scan = scan_folder(split_dir, None)
    assert len(scan.train) == 25 and str(nested / "extra.PNG") in [p for p, _ in scan.train.items()]


# --- bad data: each case refused with the path and the fix --------------------------------------------------


def test_an_unreadable_image_of_the_stats_sample_is_refused_at_the_start(split_dir):
    bad = split_dir / "train" / "digit1" / "broken.png"
    bad.write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match=rf"1 image cannot be decoded:\n  {re.escape(str(bad))}: cannot identify "
                       r"image file\nreplace or delete it, or pass --on-bad-image skip"):
        build_data(folder_config(split_dir))
    data = build_data(folder_config(split_dir, on_bad_image="skip"))  # left out of the sample, listed
    assert data.stats_images == 24 and data.skipped == (f"{bad}: cannot identify image file",)


def test_other_unreadable_images_are_found_when_loaded_not_at_the_start(split_dir):
    bad = split_dir / "val" / "digit1" / "broken.png"
    bad.write_bytes(b"definitely not a png")
    data = build_data(folder_config(split_dir))  # no pass over every image: nothing noticed yet
    assert len(data.val) == 9 and data.skipped == ()
    with pytest.raises(DataError, match=rf"1 image cannot be decoded:\n  {re.escape(str(bad))}: cannot identify "
                       r"image file\nreplace or delete it, or pass --on-bad-image skip"):
        build_data(folder_config(split_dir, check_images=True))  # the opt-in pass over every image


def test_check_images_with_skip_leaves_unreadable_images_out_and_lists_them(split_dir, caplog):
    bad = [split_dir / "train" / "digit2" / "broken.png", split_dir / "val" / "digit0" / "empty.jpg"]
    bad[0].write_bytes(b"junk")
    bad[1].write_bytes(b"")
    data = build_data(folder_config(split_dir, on_bad_image="skip", check_images=True))
    assert (len(data.train), len(data.val)) == (24, 8)
    assert [line.split(": ")[0] for line in data.skipped] == [str(p) for p in bad]
    assert "skipping 2 unreadable images (--on-bad-image skip)" in caplog.text


def checked_summary(checked):
    return {"train": list(checked.train.items()), "val": list(checked.val.items()),
            "skipped": [[str(b.path), b.reason] for b in checked.skipped]}


def stats_summary(scan):
    dataset = ImageDataset(scan.train, ImageLoader(1, 10), EvalTransform(8))
    sample = sample_pixel_stats(dataset, 1, max_images=20, seed=3)
    return {"stats": sample.stats.mean_std(), "images": sample.images,
            "unreadable": [str(b) for b in sample.unreadable]}


def _check_images_as_one_of_two(local_rank, data_dir, out_dir):
    """In each of two gloo processes: check the images and sample the mean and std, noting what this process
    decoded."""
    decoded, decode = [], imagecheck.decode_image

    def counting_decode(path, *args):
        decoded.append(str(path))
        return decode(path, *args)

    imagecheck.decode_image = counting_decode
    scan = scan_folder(Path(data_dir), None)
    summary = checked_summary(check_images(scan, 1, 10, "skip"))
    sampled = []
    load = ImageLoader.__call__
    ImageLoader.__call__ = lambda self, path: sampled.append(path) or load(self, path)
    result = {"decoded": decoded, "sampled": sampled, **summary, **stats_summary(scan)}
    (Path(out_dir) / f"rank{idist.get_rank()}.json").write_text(json.dumps(result))


def test_two_processes_split_the_image_check_and_the_stats_sample_and_both_get_the_whole_result(split_dir,
                                                                                                  tmp_path):
    (split_dir / "train" / "digit2" / "broken.png").write_bytes(b"junk")
    scan = scan_folder(split_dir, None)
    alone = json.loads(json.dumps({**checked_summary(check_images(scan, 1, 10, "skip")),
                                   **stats_summary(scan)}))  # tuples as lists
    assert len(alone["skipped"]) == 1 and len(alone["train"]) == 24 and alone["images"] + len(alone["unreadable"]) == 20
    with idist.Parallel(backend="gloo", nproc_per_node=2, master_addr="127.0.0.1", master_port=free_port()) as p:
        p.run(_check_images_as_one_of_two, str(split_dir), str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for result in ranks:
        assert {k: v for k, v in result.items() if k not in ("decoded", "sampled")} == alone
    every_file = {path for path, _ in [*scan.train.items(), *scan.val.items()]}
    first, second = (set(r["decoded"]) for r in ranks)
    assert len(first) == 17 and len(second) == 16  # 33 files: each decoded once, by one process
    assert first | second == every_file and not first & second
    first, second = (r["sampled"] for r in ranks)
    assert len(first) == len(second) == 10 and not set(first) & set(second)  # the sample of 20, split in two


def test_a_class_left_without_images_after_skipping_is_refused(tmp_path):
    data_dir = write_digit_folders(tmp_path / "d", classes=(0, 1), train=2, val=1)
    for path in (data_dir / "train" / "digit1").iterdir():
        path.write_bytes(b"junk")
    with pytest.raises(DataError, match="class 'digit1' has no readable training image left once the 2 "
                                        "unreadable ones are skipped"):
        build_data(folder_config(data_dir, on_bad_image="skip", check_images=True))


@pytest.mark.parametrize("folder", ["plain", "with {braces}"])  # a path is never taken as a format template
def test_a_class_folder_missing_from_the_label_map_is_refused(split_dir, tmp_path, folder):
    (tmp_path / folder).mkdir()
    label_map = write_label_map(tmp_path / folder / "labels.txt", "digit0", "digit1", "digit2")
    with pytest.raises(DataError, match=re.escape(
            f"class folder {split_dir / 'train' / 'digit3'} is not in the label map {label_map} (3 classes: "
            f"digit0, digit1, digit2); add the line 'digit3' to {label_map}, or move the folder out of "
            f"{split_dir / 'train'}")):
        build_data(folder_config(split_dir, label_map=label_map))


def test_a_label_map_class_without_images_is_refused(split_dir, tmp_path):
    label_map = write_label_map(tmp_path / "labels.txt", "digit0", "digit1", "digit2", "digit3", "cat")
    with pytest.raises(DataError, match=re.escape(
            f"class 'cat' of the label map {label_map} has no images: expected them in "
            f"{split_dir / 'train' / 'cat'}/; add images there, or remove the line from {label_map}")):
        build_data(folder_config(split_dir, label_map=label_map))


@pytest.mark.parametrize(("lines", "match"), [
    (["digit0", "", "digit1"], r"line 2 \(class 1\) is blank; fix the file"),
    (["digit0", "  ", "digit1"], r"line 2 \(class 1\) is blank"),
    (["digit0", "digit1", "digit0"], r"line 3 repeats 'digit0' from line 1; class names must be unique"),
])
def test_blank_or_duplicate_label_map_names_are_refused(split_dir, tmp_path, lines, match):
    label_map = write_label_map(tmp_path / "labels.txt", *lines)
    with pytest.raises(DataError, match=rf"label map '{re.escape(str(label_map))}': {match}"):
        build_data(folder_config(split_dir, label_map=label_map))


def test_a_missing_label_map_is_refused(split_dir, tmp_path):
    with pytest.raises(DataError, match=r"--label-map .*nope.txt: no such file; pass the label-map file"):
        build_data(folder_config(split_dir, label_map=tmp_path / "nope.txt"))


def test_a_missing_or_empty_data_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match=rf"--data-dir {re.escape(str(tmp_path / 'nope'))}: no such folder"):
        build_data(folder_config(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=rf"--data-dir {re.escape(str(tmp_path / 'empty'))} holds no class folders; "
                                        r"expected .*/train/<class>/<image>"):
        build_data(folder_config(tmp_path / "empty", val_split=0.2))


def test_an_empty_class_folder_is_refused(split_dir):
    (split_dir / "val" / "digit9").mkdir()
    (split_dir / "train" / "digit9").mkdir()
    (split_dir / "train" / "digit9" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=rf"class folder {re.escape(str(split_dir / 'train' / 'digit9'))} holds no "
                                        r"images \(.bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp\)"):
        build_data(folder_config(split_dir))


def test_train_and_val_folders_with_different_classes_are_refused(split_dir):
    (split_dir / "val" / "digit3").rename(split_dir / "val" / "digit5")
    with pytest.raises(DataError, match=r"the class folders of .*train and .*val differ \(only in train: digit3; "
                                        r"only in val: digit5\); give both the same class folders"):
        build_data(folder_config(split_dir))


@pytest.mark.parametrize(("layout", "val_split", "match"), [
    ("split", 0.2, r"--val-split 0.2: .* already has train/ and val/ folders, which fix the split; drop --val-split"),
    ("flat", None, r"has class folders but no train/ and val/ folders: pass --val-split 0.2"),
    ("train-only", None, r"has a train/ folder but no val/ folder: add .*/val/<class>/ folders"),
])
def test_the_layout_and_val_split_must_agree(tmp_path, layout, val_split, match):
    data_dir = write_digit_folders(tmp_path / "d", classes=(0, 1), train=2, val=1, flat=layout == "flat")
    if layout == "train-only":
        for path in (data_dir / "val").rglob("*.png"):
            path.unlink()
        for folder in sorted((data_dir / "val").rglob("*"), reverse=True):
            folder.rmdir()
        (data_dir / "val").rmdir()
    with pytest.raises(DataError, match=match):
        build_data(folder_config(data_dir, val_split=val_split))


@pytest.mark.parametrize("flat", [True, False])
def test_a_single_class_folder_is_refused(tmp_path, flat):
    data_dir = write_digit_folders(tmp_path / "d", classes=(0,), train=2, val=1, flat=flat)
    root = data_dir if flat else data_dir / "train"
    with pytest.raises(DataError, match=re.escape(
            f"{root} has a single class folder, {root / 'digit0'}: a classifier needs at least 2 classes; add a "
            "folder of images for each other class")):
        scan_folder(data_dir, 0.5 if flat else None)


def test_a_single_line_label_map_is_refused(split_dir, tmp_path):
    label_map = write_label_map(tmp_path / "labels.txt", "digit0")
    with pytest.raises(DataError, match=re.escape(
            f"--label-map {label_map} lists a single class ('digit0'): a classifier needs at least 2 classes; add "
            "a line for each class")):
        build_data(folder_config(split_dir, label_map=label_map))


@pytest.mark.parametrize(("name", "problem"), [
    (" ", "a blank name"),
    ("\t ", "a blank name"),
    ("cat\r", "a control character in its name"),
    ("a\nb", "a control character in its name"),
    ("bell\x07", "a control character in its name"),
])
def test_a_class_folder_name_that_is_blank_or_holds_control_characters_is_refused(split_dir, name, problem):
    for split in ("train", "val"):
        (split_dir / split / "digit3").rename(split_dir / split / name)
    with pytest.raises(DataError, match=re.escape(
            f"class folder {str(split_dir / 'train' / name)!r} has {problem} ({name!r}); rename the folder: a class "
            "name is one line of visible text")):
        scan_folder(split_dir, None)


@pytest.mark.parametrize("classes", [("bus", "car", "train"), ("bus", "val"), ("train", "val")])
def test_with_val_split_the_folders_are_the_classes_whatever_their_names(tmp_path, classes):
    data_dir = write_digit_folders(tmp_path / "d", classes=(0, 1, 2)[:len(classes)], train=5, val=0, flat=True,
                                   names=dict(enumerate(classes)))
    scan = scan_folder(data_dir, 0.2)
    assert scan.classes == classes and len(scan.train) + len(scan.val) == 5 * len(classes)
    assert set(scan.val.labels.tolist()) == set(range(len(classes)))
    evaluated = scan_folder(data_dir, 0.2, checkpoint_classes(classes, Path("best_model.pt")), evaluation=True)
    assert list(evaluated.val.items()) == list(scan.val.items()) and not len(evaluated.train)  # the same share


def test_without_val_split_a_flat_folder_with_a_train_class_is_told_to_pass_it(tmp_path):
    data_dir = write_digit_folders(tmp_path / "d", classes=(0, 1, 2), train=2, val=0, flat=True,
                                   names={0: "bus", 1: "car", 2: "train"})
    with pytest.raises(DataError, match=re.escape(
            f"{data_dir} has a train/ folder but no val/ folder: add {data_dir / 'val'}/<class>/ folders with "
            f"validation images, or, if the folders of {data_dir} are the classes (train among them), pass "
            "--val-split 0.2")):
        scan_folder(data_dir, None)


@pytest.mark.parametrize(("entry", "folder", "listed_in", "says"), [
    ("digit1 ", "digit1", "label map", "line 2 is 'digit1 ', which differs from the folder name 'digit1' only by "
                                       "whitespace at its ends; remove the whitespace from the line"),
    ("digit1", " digit1", "label map", "line 2 is 'digit1', which differs from the folder name ' digit1' only by "
                                       "whitespace at its ends; rename the folder to 'digit1'"),
    ("digit1 ", "digit1", "checkpoint", "class 1 is 'digit1 ', which differs from the folder name 'digit1' only by "
                                        "whitespace at its ends; rename the folder to 'digit1 '"),
])
def test_a_class_name_with_whitespace_around_it_is_pointed_out(split_dir, tmp_path, entry, folder, listed_in, says):
    for split in ("train", "val"):
        (split_dir / split / "digit1").rename(split_dir / split / folder)
    names = ("digit0", entry, "digit2", "digit3")
    if listed_in == "label map":
        classes = label_map_classes(write_label_map(tmp_path / "labels.txt", *names))
    else:
        classes = checkpoint_classes(names, tmp_path / "best_model.pt")
    with pytest.raises(DataError, match=re.escape(
            f"class folder {split_dir / 'train' / folder} is not in {classes.origin}: {says}")):
        scan_folder(split_dir, None, classes)


def test_names_that_are_the_same_in_two_unicode_forms_are_refused(tmp_path):
    composed = "caf\u00e9"
    decomposed = unicodedata.normalize("NFD", composed)
    label_map = write_label_map(tmp_path / "labels.txt", composed, "dog", decomposed)
    with pytest.raises(DataError, match=re.escape(
            f"label map {label_map}: lines 1 and 3 are the same name ('caf\u00e9') in two Unicode forms; keep one "
            "of them")):
        label_map_classes(label_map)
    data_dir = write_digit_folders(tmp_path / "d", classes=(0, 1, 2), train=2, val=0, flat=True,
                                   names={0: composed, 1: "dog", 2: decomposed})
    first, second = sorted([data_dir / composed, data_dir / decomposed])
    with pytest.raises(DataError, match=re.escape(
            f"class folders {first} and {second} have the same name in two Unicode forms; move the images of one "
            "into the other")):
        scan_folder(data_dir, 0.5)


def test_folder_names_match_the_label_map_in_any_unicode_form(tmp_path):
    composed = ("\uace0\uc591\uc774", "caf\u00e9")  # 고양이, café as an editor writes them (NFC)
    decomposed = tuple(unicodedata.normalize("NFD", name) for name in composed)  # as macOS names folders
    assert decomposed != composed
    data_dir = write_digit_folders(tmp_path / "d", classes=(0, 1), train=2, val=1, names=dict(enumerate(decomposed)))
    label_map = write_label_map(tmp_path / "labels.txt", *composed)
    scan = scan_folder(data_dir, None, label_map_classes(label_map))
    assert scan.classes == composed
    for path, label in [*scan.train.items(), *scan.val.items()]:
        assert Path(path).exists() and Path(path).parent.name == decomposed[label]  # opened as named on disk


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"dataset": "folder"}, r"--dataset folder needs --data-dir DIR"),
    ({"data_dir": "x"}, r"--data-dir x is only read with --dataset folder and the standard datasets \(this run "
                        r"uses --dataset digits\); drop --data-dir, or use a dataset that reads it"),
    ({"augment": True}, r"--augment True is only read with --dataset folder and the standard datasets"),
    ({"dataset": "cifar10", "label_map": "x"}, r"--label-map x is only read with --dataset folder \(this run uses "
                                               r"--dataset cifar10\)"),
    ({"dataset": "folder", "data_dir": "x", "download": True}, r"--download True is only read with the standard "
                                                               r"datasets \(mnist, fashion-mnist, cifar10, cifar100\)"),
    ({"cache": "c"}, r"--cache c is only read with --dataset folder"),
    ({"dataset": "folder", "data_dir": "x", "crop_fraction": 1.5}, r"--crop-fraction must be <= 1, got 1.5"),
    ({"dataset": "folder", "data_dir": "x", "scale_min": 0.0}, r"--scale-min must be > 0, got 0.0"),
    ({"dataset": "folder", "data_dir": "x", "val_split": 1.0}, r"--val-split must be < 1, got 1.0"),
    ({"dataset": "folder", "data_dir": "x", "channels": 2}, r"--channels must be one of 1, 3; got 2"),
    ({"dataset": "folder", "data_dir": "x", "image_size": 4}, r"--image-size must be >= 8, got 4"),
])
def test_folder_options_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_augmentation_defaults_on_for_folders_and_the_standard_datasets_only():
    assert TrainConfig(dataset="folder", data_dir="x").augments and not TrainConfig().augments
    assert TrainConfig(dataset="cifar10").augments and not TrainConfig(dataset="synthetic").augments
    assert not TrainConfig(dataset="folder", data_dir="x", augment=False).augments
    assert not TrainConfig(augment=False).augments  # --no-augment is accepted everywhere


def test_the_standard_datasets_read_data_and_hold_out_a_tenth_by_default():
    config = TrainConfig(dataset="mnist")
    assert (config.data_dir, config.val_split) == (Path("data"), 0.1)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig(dataset="cifar100", data_dir="elsewhere", val_split=0.2).val_split == 0.2


def test_the_default_number_of_workers_leaves_a_core_to_training_and_spares_the_small_datasets(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert TrainConfig(dataset="folder", data_dir="x").loader_workers == 8
    assert TrainConfig(dataset="cifar10", nproc_per_node=4, backend="gloo").loader_workers == 3
    assert TrainConfig().loader_workers == 0 and TrainConfig(num_workers=5).loader_workers == 5
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert TrainConfig(dataset="folder", data_dir="x").loader_workers == 0


# --- augmentation that does not depend on workers ------------------------------------------------------------


def test_the_sampler_gives_every_sample_a_seed_that_depends_on_seed_epoch_and_pass():
    sampler = EpochBatchSampler(10, 4, seed=3, num_batches=6, with_seeds=True)  # 3 batches (4, 4, 2) per pass
    sampler.set_epoch(2)
    batches = list(sampler)
    keys = [key for batch in batches for key in batch]
    assert all(isinstance(k, SampleKey) for k in keys)
    first_pass, second_pass = keys[:10], keys[10:20]
    assert sorted(k.index for k in first_pass) == list(range(10))
    assert {k.index: k.seed for k in first_pass} != {k.index: k.seed for k in second_pass}
    plain = EpochBatchSampler(10, 4, seed=3, num_batches=6)
    plain.set_epoch(2)
    assert [k.index for k in keys] == [i for batch in plain for i in batch]  # the order is unchanged
    sampler.set_epoch(2, start=4)
    assert list(sampler) == batches[4:]  # resumed mid-epoch: the same keys


def test_augmented_batches_are_identical_with_0_and_2_workers(split_dir):
    batches = {}
    for workers in (0, 2):
        config = folder_config(split_dir, batch_size=8, num_workers=workers, epoch_length=4)
        train, _ = build_loaders(build_data(config), config)
        train.batch_sampler.set_epoch(3)
        batches[workers] = list(train)
    assert len(batches[0]) == 4
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2]):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)


def test_the_cache_serves_later_reads_without_changing_a_pixel(split_dir, tmp_path):
    plain = build_data(folder_config(split_dir))
    cached = build_data(folder_config(split_dir, cache=tmp_path / "cache"))
    cache = cached.val.loader.cache
    assert (cache.short_side, cache.channels, cache.root) == (10, 1, tmp_path / "cache")  # ceil(8 / 0.875)
    for _ in range(2):  # the first pass fills the cache (the stats sample filled the training images' entries)
        for i in range(len(cached.val)):
            assert torch.equal(cached.val[i][0], plain.val[i][0])
        for key in (SampleKey(3, 17), SampleKey(5, 2)):
            assert torch.equal(cached.train[key][0], plain.train[key][0])
    assert cache.hits >= 8 + 2 * 2


def test_loaders_take_the_prefetch_depth_and_the_default_number_of_workers(split_dir):
    data = build_data(folder_config(split_dir))
    train, val = build_loaders(data, folder_config(split_dir, num_workers=2, prefetch=4))
    assert (train.num_workers, train.prefetch_factor, val.prefetch_factor) == (2, 4, 4) and train.persistent_workers
    train, _ = build_loaders(data, folder_config(split_dir, num_workers=None))
    assert train.num_workers == TrainConfig(dataset="folder", data_dir=split_dir).loader_workers
    assert build_loaders(data, folder_config(split_dir))[0].prefetch_factor is None  # no workers: no prefetching
