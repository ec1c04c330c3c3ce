"""The pipeline: listing, flat sample tables, the cache's identity, worker independence, unreadable files as data."""

import os
import pickle

import numpy as np
import pytest
import torch
from image_files import photo_folder
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.data._utils.pin_memory import pin_memory

from ignite_app.data.cache import ImageCache
from ignite_app.data.decode import UnreadableImage
from ignite_app.data.pipeline import (
    ArrayDataset,
    BadImage,
    Batch,
    FileTable,
    Flagged,
    ImageDataset,
    ImageLoader,
    replacement_key,
)
from ignite_app.data.scan import find_images
from ignite_app.data.transforms import EvalTransform, PaddedCropTransform, TrainTransform

EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


def walk_reference(folder):
    """folder.find_images as it is today: os.walk, sorted names, hidden names and other suffixes skipped."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(parent, f) for f in sorted(files)
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in EXTENSIONS]
    return found


def test_find_images_lists_what_os_walk_lists_in_the_same_order(tmp_path):
    for name in ["b/2.png", "b/1.JPG", "b/z/deep.jpeg", "b/a/x.png", "a.png", "b/notes.txt", "b/.hidden.png",
                 ".git/c.png", "b/a/ä.png", "c/y.webp", "c/Y.TIFF"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "b" / "link").symlink_to(tmp_path / "c")  # a link to a folder: not entered (no cycles)
    found = find_images(tmp_path, EXTENSIONS)
    assert found == walk_reference(tmp_path)
    assert [os.path.relpath(p, tmp_path) for p in found] == [
        "a.png", "b/1.JPG", "b/2.png", "b/a/x.png", "b/a/ä.png", "b/z/deep.jpeg", "c/Y.TIFF", "c/y.webp"]


def test_a_file_table_holds_paths_and_labels_in_flat_arrays(tmp_path):
    odd = os.fsdecode(b"caf\xe9.png")  # not UTF-8: a Latin-1 name, kept through os.fsencode
    paths = ["/data/a/1.png", "/data/b/héllo.jpg", f"/data/c/{odd}", "/x.png"]
    table = FileTable.from_paths(paths, [0, 1, 2, 1])
    assert table.path_bytes.dtype == np.uint8 and table.offsets.dtype == np.int64 and table.labels.dtype == np.int64
    assert [table.path(i) for i in range(len(table))] == paths
    part = table.take([3, 1, 1])
    assert [part.path(i) for i in range(3)] == [paths[3], paths[1], paths[1]] and part.labels.tolist() == [1, 1, 1]
    assert len(pickle.dumps(table)) < 1000  # three arrays, not a Python object per sample
    with pytest.raises(ValueError, match="got 4 paths but 3 labels"):
        FileTable.from_paths(paths, [0, 1, 2])










def test_the_cache_changes_no_pixel(tmp_path):
    paths, labels = photo_folder(tmp_path / "data", count=6, size=(50, 70))
    table = FileTable.from_paths(paths, labels)
    plain = ImageLoader(3, 37)
    cached = ImageLoader(3, 37, ImageCache(tmp_path / "cache", 37, 3))
    for transform, keys in ((TrainTransform(32), [(i, 100 + i) for i in range(6)]), (EvalTransform(32), range(6))):
        a, b = ImageDataset(table, plain, transform), ImageDataset(table, cached, transform)
        for key in keys:
            for _ in range(2):  # the first read fills the cache, the second reads it
                image, label = b[key]
                assert torch.equal(image, a[key][0]) and label == a[key][1]
    assert cached.cache.hits >= 6


def batches(dataset, workers, keys):
    loader = DataLoader(dataset, batch_sampler=[keys[:3], keys[3:]], num_workers=workers,
                        collate_fn=getattr(dataset, "collate_fn", None))
    return [(x.clone(), y.clone()) for x, y in loader]


def test_batches_do_not_depend_on_the_number_of_workers(tmp_path):
    paths, labels = photo_folder(tmp_path, count=6)
    dataset = ImageDataset(FileTable.from_paths(paths, labels), ImageLoader(3, 37), TrainTransform(32))
    assert dataset.takes_sample_seeds
    keys = [(i, 1000 * i + 7) for i in (4, 0, 5, 2, 1, 3)]  # what EpochBatchSampler(with_seeds=True) yields
    alone, two = batches(dataset, 0, keys), batches(dataset, 2, keys)
    assert len(alone) == 2 and alone[0][0].shape == (3, 3, 32, 32) and alone[0][0].dtype == torch.uint8
    for (x0, y0), (x2, y2) in zip(alone, two):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert alone[0][1].tolist() == [labels[4], labels[0], labels[5]]


def test_an_array_dataset_serves_uint8_images_plain_or_augmented():
    images, labels = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8), torch.arange(5)
    plain = ArrayDataset(images, labels)
    assert torch.equal(plain[2][0], images[2]) and plain[2][1] == 2 and not plain.takes_sample_seeds
    augmented = ArrayDataset(images, labels, PaddedCropTransform(28, 2, flip=False))
    assert augmented.takes_sample_seeds and torch.equal(augmented[(2, 9)][0], augmented[(2, 9)][0])
    with pytest.raises(ValueError, match=r"expected uint8 images \(N, C, H, W\) and labels \(N,\), got "
                                         r"torch.float32 \(5, 1, 28, 28\)"):
        ArrayDataset(images.float(), labels)


def test_a_loader_and_a_cache_of_different_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="the cache holds images of short side 40 with 3 channels, the loader "
                                         "makes 37 with 3"):
        ImageLoader(3, 37, ImageCache(tmp_path, 40, 3))


def test_an_unreadable_file_raises_from_the_dataset(tmp_path):
    paths, labels = photo_folder(tmp_path, count=3)
    Image.new("RGB", (4, 4)).save(paths[1])
    with open(paths[1], "r+b") as f:
        f.truncate(20)
    dataset = ImageDataset(FileTable.from_paths(paths, labels), ImageLoader(3, 37), EvalTransform(32))
    with pytest.raises(UnreadableImage, match="01.jpg"):
        dataset[1]


def break_file(path):
    Image.new("RGB", (4, 4)).save(path)
    with open(path, "r+b") as f:
        f.truncate(20)


def test_an_unreadable_training_sample_is_replaced_by_a_pure_function_of_its_key(tmp_path):
    paths, labels = photo_folder(tmp_path, count=6)
    break_file(paths[1])
    dataset = ImageDataset(FileTable.from_paths(paths, labels), ImageLoader(3, 37), TrainTransform(32), "skip")
    item = dataset[(1, 77)]
    other, other_seed = replacement_key(1, 77, 1, 6)
    assert other != 1  # with this key: the first try is a readable file
    assert isinstance(item, Flagged) and [b.path for b in item.unreadable] == [paths[1]]
    assert torch.equal(item.image, dataset[(other, other_seed)][0]) and item.label == labels[other]
    again = ImageDataset(FileTable.from_paths(paths, labels), ImageLoader(3, 37), TrainTransform(32), "skip")
    assert torch.equal(again[(1, 77)].image, item.image)  # another process, a resumed run: the same choice
    assert dataset[(0, 77)][1] == labels[0] and not isinstance(dataset[(0, 77)], Flagged)


def test_unreadable_items_are_left_out_of_their_batch_and_carried_by_it(tmp_path):
    paths, labels = photo_folder(tmp_path, count=4)
    break_file(paths[2])
    for policy in ("error", "skip"):  # validation (no seed): left out under both; error stops in the trainer
        dataset = ImageDataset(FileTable.from_paths(paths, labels), ImageLoader(3, 37), EvalTransform(32), policy)
        batch = dataset.collate_fn([dataset[i] for i in range(4)])
        assert isinstance(batch, Batch) and batch[0].shape == (3, 3, 32, 32) and batch[0].dtype == torch.uint8
        assert batch[1].tolist() == [labels[0], labels[1], labels[3]]
        assert batch.unreadable == (BadImage(paths[2], dataset[2].unreadable[0].reason),)
    empty = dataset.collate_fn([dataset[2]])  # every image of a batch left out: an empty batch of the right shape
    assert empty[0].shape == (0, 3, 32, 32) and empty[1].shape == (0,) and len(empty.unreadable) == 1
    images, labels_ = pickle.loads(pickle.dumps(batch))  # from a worker: the files travel with the tensors
    assert torch.equal(images, batch[0]) and pickle.loads(pickle.dumps(batch)).unreadable == batch.unreadable


def test_a_batch_keeps_its_files_through_the_loaders_pinning(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *args: self.clone())  # no CUDA here
    batch = Batch(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), [BadImage("a.png", "broken")])
    pinned = pin_memory(batch)  # what DataLoader(pin_memory=True) calls on every batch
    assert isinstance(pinned, Batch) and pinned.unreadable == batch.unreadable
    assert torch.equal(pinned[0], batch[0]) and torch.equal(pinned[1], batch[1])


def test_workers_carry_unreadable_files_to_the_main_process(tmp_path):
    paths, labels = photo_folder(tmp_path, count=6)
    break_file(paths[4])
    dataset = ImageDataset(FileTable.from_paths(paths, labels), ImageLoader(3, 37), TrainTransform(32), "skip")
    keys = [(i, 1000 * i + 7) for i in (4, 0, 5, 2, 1, 3)]
    alone, two = batches(dataset, 0, keys), batches(dataset, 2, keys)
    for (x0, y0), (x2, y2) in zip(alone, two):
        assert torch.equal(x0, x2) and torch.equal(y0, y2) and x0.shape[0] == 3  # replaced: full batches
    loader = DataLoader(dataset, batch_sampler=[keys[:3]], num_workers=1, collate_fn=dataset.collate_fn)
    assert [b.path for b in next(iter(loader)).unreadable] == [paths[4]]
