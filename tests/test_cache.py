"""The --cache folder: hits across instances and processes, invalidation, damaged files ignored, concurrent writers."""

import logging
import multiprocessing
import os
import pickle
import signal
import time

import numpy as np
import pytest
import torch
from image_files import photo, save
from torch.utils.data import DataLoader

from ignite_app.data import cache as cache_module
from ignite_app.data.cache import HEADER, RECORD, ImageCache
from ignite_app.data.decode import UnreadableImage, decode_image
from ignite_app.data.pipeline import FileTable, ImageDataset, ImageLoader
from ignite_app.data.transforms import EvalTransform

SIDE = 24


def decoder(path):
    return decode_image(path, 3, SIDE)


def photos(folder, count, size=(30, 40), first_seed=0):
    return [str(save(folder / f"{i:02d}.png", photo(*size, seed=first_seed + i))) for i in range(count)]


def fresh(cache):
    """A new instance on the same folder: what a later run (or another process) sees."""
    return ImageCache(cache.root, cache.short_side, cache.channels)


def shards(cache, suffix=".data"):
    return sorted(p for p in cache.folder.iterdir() if p.name.endswith(suffix))


def read_all(cache, paths):
    images = [cache.load(p, decoder) for p in paths]
    for path, image in zip(paths, images):
        assert torch.equal(image, decoder(path)), path
    return images


def test_later_reads_and_later_runs_hit_the_cache(tmp_path):
    paths = photos(tmp_path / "data", 3)
    cache = ImageCache(tmp_path / "cache", SIDE, 3)
    read_all(cache, paths)
    assert (cache.hits, cache.misses) == (0, 3)
    read_all(cache, paths)
    assert (cache.hits, cache.misses) == (3, 3)
    later = fresh(cache)
    images = read_all(later, paths)
    assert (later.hits, later.misses) == (3, 0) and images[0].shape == (3, SIDE, 32)
    assert len(shards(cache)) == 1 and shards(cache)[0].name.split("-")[-2] == str(os.getpid())
    assert cache.folder.name == f"v1-short{SIDE}-c3"


def test_a_changed_file_is_decoded_again_and_its_entry_refreshed(tmp_path):
    paths = photos(tmp_path / "data", 2)
    cache = ImageCache(tmp_path / "cache", SIDE, 3)
    read_all(cache, paths)
    before = os.stat(paths[0])
    old = decoder(paths[0])
    save(tmp_path / "data" / "00.png", photo(30, 40, seed=99))
    os.utime(paths[0], ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    new = cache.load(paths[0], decoder)
    assert not torch.equal(new, old) and torch.equal(new, decoder(paths[0])) and cache.misses == 3
    later = fresh(cache)
    assert torch.equal(later.load(paths[0], decoder), new) and later.hits == 1  # the refreshed entry
    save(tmp_path / "data" / "00.png", photo(30, 40, seed=0))  # the old file back, with its old size and mtime
    os.utime(paths[0], ns=(before.st_atime_ns, before.st_mtime_ns))
    assert torch.equal(later.load(paths[0], decoder), old) and later.hits == 2  # the old entry still matches it


def test_a_removed_file_is_never_served_from_the_cache(tmp_path):
    paths = photos(tmp_path / "data", 2)
    cache = ImageCache(tmp_path / "cache", SIDE, 3)
    read_all(cache, paths)
    os.remove(paths[1])
    with pytest.raises(UnreadableImage, match="01.png: No such file or directory"):
        cache.load(paths[1], decoder)


def test_an_added_file_is_decoded_and_stored(tmp_path):
    paths = photos(tmp_path / "data", 2)
    cache = ImageCache(tmp_path / "cache", SIDE, 3)
    read_all(cache, paths)
    paths += photos(tmp_path / "data" / "more", 1, first_seed=5)
    later = fresh(cache)
    read_all(later, paths)
    assert (later.hits, later.misses) == (2, 1)
    assert fresh(cache).get(paths[2], os.stat(paths[2])) is not None
    assert len(shards(cache, ".index")) == 2  # the later run wrote files of its own


def entry_sizes(paths):
    return [int(np.prod(decoder(p).shape)) for p in paths]


def test_a_truncated_data_file_or_index_is_ignored(tmp_path):
    paths = photos(tmp_path / "data", 3)
    cache = ImageCache(tmp_path / "cache", SIDE, 3)
    read_all(cache, paths)
    (data,), (index,) = shards(cache), shards(cache, ".index")
    sizes = entry_sizes(paths)
    os.truncate(data, HEADER.size + sizes[0] + sizes[1] + sizes[2] // 2)  # the third image half written
    later = fresh(cache)
    read_all(later, paths)
    assert (later.hits, later.misses) == (2, 1)  # the third decoded again (and stored again, complete)
    os.truncate(index, HEADER.size + RECORD.itemsize + RECORD.itemsize // 2)  # the second record torn
    for name in shards(cache)[1:] + shards(cache, ".index")[1:]:
        name.unlink()  # only the damaged pair left
    last = fresh(cache)
    read_all(last, paths)
    assert (last.hits, last.misses) == (1, 2)


def test_damaged_pixels_or_records_are_ignored(tmp_path):
    paths = photos(tmp_path / "data", 2)
    cache = ImageCache(tmp_path / "cache", SIDE, 3)
    read_all(cache, paths)
    (data,), (index,) = shards(cache), shards(cache, ".index")
    with open(data, "r+b") as f:  # one pixel of the first image changed: its CRC no longer holds
        f.seek(HEADER.size + 100)
        byte = f.read(1)
        f.seek(HEADER.size + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with open(index, "r+b") as f:  # the second record's offset shifted: its own checksum no longer holds
        f.seek(HEADER.size + RECORD.itemsize + RECORD.fields["offset"][1])
        f.write((12345).to_bytes(8, "little"))
    later = fresh(cache)
    read_all(later, paths)
    assert (later.hits, later.misses) == (0, 2)


def test_a_record_seen_half_written_is_read_again_later(tmp_path, monkeypatch):
    paths = photos(tmp_path / "data", 2)
    cache = ImageCache(tmp_path / "cache", SIDE, 3)
    read_all(cache, paths)
    (index,) = shards(cache, ".index")
    last = index.read_bytes()[-RECORD.itemsize:]

    def overwrite_last(data):
        with open(index, "r+b") as f:  # in place: readers map the file
            f.seek(-RECORD.itemsize, os.SEEK_END)
            f.write(data)

    overwrite_last(bytes(RECORD.itemsize))  # the last record's bytes not there yet
    monkeypatch.setattr(cache_module, "REFRESH_S", 0.0)
    reader = fresh(cache)
    assert reader.get(paths[0], os.stat(paths[0])) is not None and reader.get(paths[1], os.stat(paths[1])) is None
    overwrite_last(last)  # the write completes
    time.sleep(0.1)
    assert torch.equal(reader.get(paths[1], os.stat(paths[1])), decoder(paths[1]))


def test_a_cache_of_another_version_size_or_channel_count_is_never_read(tmp_path, monkeypatch):
    paths = photos(tmp_path / "data", 2)
    cache = ImageCache(tmp_path / "cache", SIDE, 3)
    read_all(cache, paths)
    for side, channels in ((SIDE + 1, 3), (SIDE, 1)):
        other = ImageCache(cache.root, side, channels)
        assert other.load(paths[0], lambda p, c=channels, s=side: decode_image(p, c, s)).shape[0] == channels
        assert (other.hits, other.misses) == (0, 1)
    monkeypatch.setattr(cache_module, "FORMAT_VERSION", 2)  # a later version reading this folder's files
    newer = ImageCache(cache.root, SIDE, 3)
    assert newer.folder.name == f"v2-short{SIDE}-c3"
    (tmp_path / "cache" / newer.folder.name).mkdir()
    for path in shards(cache) + shards(cache, ".index"):  # even if the files were moved into its folder
        os.link(path, newer.folder / path.name)
    read_all(newer, paths)
    assert (newer.hits, newer.misses) == (0, 2)


def _fill(folder, paths, barrier):
    cache = ImageCache(folder, SIDE, 3)
    barrier.wait()  # both processes write at the same time
    for path in paths:
        cache.load(path, decoder)


def test_two_processes_fill_the_cache_at_once(tmp_path):
    paths = photos(tmp_path / "data", 10)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_fill, args=(tmp_path / "cache", order, barrier))
               for order in (paths, paths[::-1])]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    cache = ImageCache(tmp_path / "cache", SIDE, 3)
    assert len(shards(cache)) == 2
    records = sum((p.stat().st_size - HEADER.size) // RECORD.itemsize for p in shards(cache, ".index"))
    assert 10 <= records <= 20  # each image at least once; a race may store one twice, harmlessly
    read_all(cache, paths)
    assert (cache.hits, cache.misses) == (10, 0)


def _images(count, side):
    base = torch.randint(0, 256, (3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return (base + i for i in range(count))  # each image different, known to the test


def _write_forever(folder, stat_path, ready):
    cache = ImageCache(folder, 512, 3)
    stat = os.stat(stat_path)
    for i, image in enumerate(_images(10_000, 512)):
        cache.put(f"/virtual/{i}.png", stat, image)
        if i == 5:
            ready.set()


def test_a_writer_killed_while_it_runs_leaves_a_prefix_of_complete_entries(tmp_path):
    stat_path = photos(tmp_path / "data", 1)[0]
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    writer = context.Process(target=_write_forever, args=(tmp_path / "cache", stat_path, ready))
    writer.start()
    assert ready.wait(60)
    time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    cache = ImageCache(tmp_path / "cache", 512, 3)
    found = [cache.get(f"/virtual/{i}.png", os.stat(stat_path)) for i in range(200)]
    complete = [i for i, image in enumerate(found) if image is not None]
    assert len(complete) >= 6 and complete == list(range(len(complete)))  # every entry written before the kill
    for i, image in zip(complete, _images(len(complete), 512)):
        assert torch.equal(found[i], image)


def _killed_half_way(folder, stat_path, torn, in_write):
    """Write 10 entries, but stop half-way through writing the 7th image's ``torn`` ("pixels" or "record") and
    wait there to be killed."""
    real, written = cache_module._write_all, {"pixels": 0, "record": 0, "header": 0}

    def write(fd, data):
        view = memoryview(data).cast("B")
        kind = "record" if len(view) == RECORD.itemsize else "header" if len(view) == HEADER.size else "pixels"
        if kind == torn and written[kind] == 6:
            real(fd, view[: len(view) // 2])
            in_write.set()
            time.sleep(60)
        real(fd, view)
        written[kind] += 1

    cache_module._write_all = write  # in this forked child only
    cache = ImageCache(folder, 64, 3)
    for i, image in enumerate(_images(10, 64)):
        cache.put(f"/virtual/{i}.png", os.stat(stat_path), image)


@pytest.mark.parametrize("torn", ["pixels", "record"])
def test_a_writer_killed_mid_write_leaves_entries_complete_or_ignored(tmp_path, torn):
    stat_path = photos(tmp_path / "data", 1)[0]
    context = multiprocessing.get_context("fork")
    in_write = context.Event()
    writer = context.Process(target=_killed_half_way, args=(tmp_path / "cache", stat_path, torn, in_write))
    writer.start()
    assert in_write.wait(60)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    cache = ImageCache(tmp_path / "cache", 64, 3)
    (data,), (index,) = shards(cache), shards(cache, ".index")
    image_bytes = 3 * 64 * 64
    if torn == "pixels":  # six images, half of the seventh, six records
        assert data.stat().st_size == HEADER.size + 6 * image_bytes + image_bytes // 2
        assert index.stat().st_size == HEADER.size + 6 * RECORD.itemsize
    else:  # seven images, six records and half of the seventh
        assert data.stat().st_size == HEADER.size + 7 * image_bytes
        assert index.stat().st_size == HEADER.size + 6 * RECORD.itemsize + RECORD.itemsize // 2
    found = [cache.get(f"/virtual/{i}.png", os.stat(stat_path)) for i in range(10)]
    assert [i for i, image in enumerate(found) if image is not None] == list(range(6))
    for i, image in enumerate(_images(6, 64)):
        assert torch.equal(found[i], image)
    cache.put("/virtual/6.png", os.stat(stat_path), list(_images(7, 64))[6])  # a later writer: files of its own
    assert fresh(cache).get("/virtual/6.png", os.stat(stat_path)) is not None


def test_dataloader_workers_fill_and_then_read_one_cache(tmp_path):
    paths = photos(tmp_path / "data", 8)
    table = FileTable.from_paths(paths, [0] * 8)
    cached = ImageDataset(table, ImageLoader(3, SIDE, ImageCache(tmp_path / "cache", SIDE, 3)), EvalTransform(20))
    plain = ImageDataset(table, ImageLoader(3, SIDE), EvalTransform(20))
    loader = DataLoader(cached, batch_size=2, num_workers=2, persistent_workers=True)
    expected = torch.stack([plain[i][0] for i in range(8)])
    for _ in range(2):
        assert torch.equal(torch.cat([x for x, _ in loader]), expected)
    cache = fresh(cached.loader.cache)
    assert 1 <= len(shards(cache)) <= 2 and not list(cache.folder.glob(f"*-{os.getpid()}-*"))  # workers wrote
    read_all(cache, paths)
    assert cache.hits == 8
    restored = pickle.loads(pickle.dumps(cache))  # spawned workers get a copy that opens its own files
    assert torch.equal(restored.load(paths[0], decoder), decoder(paths[0]))
    assert (restored.hits, restored.misses) == (1, 0)


def test_an_unwritable_cache_is_reported_once_and_training_goes_on(tmp_path, caplog):
    paths = photos(tmp_path / "data", 2)
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    cache = ImageCache(tmp_path / "cache", SIDE, 3)
    with caplog.at_level(logging.WARNING, logger="ignite_app"):
        read_all(cache, paths + paths)
    assert [r.getMessage() for r in caplog.records] == [
        f"--cache {tmp_path / 'cache'}: cannot write (Not a directory: {cache.folder}); training goes on, decoding "
        "the images that are not cached"]


def test_only_uint8_images_of_the_cache_channels_are_stored(tmp_path):
    path = photos(tmp_path / "data", 1)[0]
    cache = ImageCache(tmp_path / "cache", SIDE, 3)
    with pytest.raises(ValueError, match=r"stores uint8 \(3, H, W\) images, got torch.float32 \(3, 4, 4\)"):
        cache.put(path, os.stat(path), torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="1 or 3 channels, got short side 24 and 2 channels"):
        ImageCache(tmp_path, SIDE, 2)
