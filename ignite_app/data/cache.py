"""``--cache DIR``: source images stored decoded and shrunk, read back by later epochs and later runs.

Each image is stored as the pipeline's source image (short side ``ceil(image_size / crop_fraction)``, uint8), so
a cached run sees exactly the pixels an uncached one decodes. Layout::

    DIR/v1-short256-c3/              one folder per format version, short side and channel count
        HOST-PID-TOKEN.data          one writer's pixels: a header, then images (H, W, C) back to back
        HOST-PID-TOKEN.index         the same writer's entries: a header, then 64-byte records

Why it stays correct:

- **One writer per pair of files.** Every process that writes (each DataLoader worker, each training process,
  each run) appends to files of its own, created on its first write, so writers never share a file and need no
  lock. A record is appended only after its pixels: a reader never finds a record whose pixels were not written.
- **Nothing is trusted.** A record carries a checksum of itself and the CRC-32 of its pixels (checked on each
  process's first read of the entry; the files are append-only, so what matched once stays so); a file whose
  header names another format version, short side or channel count is never read; a record whose checksum, pixel
  CRC or length does not hold (a writer killed mid-write, a truncated file, a machine crash before the page cache
  reached the disk) is ignored, and the image is decoded and stored again.
- **Validated when read.** An entry is keyed by the file's absolute path and holds its size and modification time;
  every read compares them with a fresh ``os.stat`` of the file. A changed file misses and gets a new entry; a
  removed file falls back to decoding, which says it is missing. Nothing is checked at start-up.
- **Another version or size is rebuilt beside it**, in its own folder; nothing is deleted (another run may be
  using it): remove ``DIR`` to reclaim the space.

Each process keeps two int64 and a flag per entry (sorted keys, where each entry is, CRC checked); the records
are read in place from memory-mapped index files, shared by every process through the page cache. Entries written
by other processes are found by re-reading the index files that grew, at most about once a second, when a lookup
misses.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import re
import secrets
import socket
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger("ignite_app")

FORMAT_VERSION = 1
MAGIC = b"IGNCACHE"
HEADER = struct.Struct("<8sIIII8x")  # magic, format version, short side, channels, record size: 32 bytes
RECORD = np.dtype([("key", "<u8"), ("key2", "<u8"), ("size", "<i8"), ("mtime_ns", "<i8"), ("offset", "<i8"),
                   ("height", "<u4"), ("width", "<u4"), ("channels", "<u4"), ("crc", "<u4"), ("check", "<u8")])
REFRESH_S = 1.0  # at most one look for other writers' new entries per second (longer if looking takes long)
_SHARD_BITS = 40  # an entry's place: shard number << 40 | record number
_MERGE_MIN = 4096  # entries found since the last sort before the sorted arrays are rebuilt


def record_checksum(words: np.ndarray) -> np.ndarray:
    """FNV-1a over the first seven 64-bit words of each record (N, 8): catches torn, zeroed or shifted records."""
    h = np.full(len(words), 0xCBF29CE484222325, dtype=np.uint64)
    for i in range(7):
        h = (h ^ words[:, i]) * np.uint64(0x100000001B3)  # uint64 arithmetic wraps, as FNV means it to
    return h


def path_key(path: str) -> tuple[int, int]:
    """Two 64-bit halves of the BLAKE2b digest of the absolute path: the entry's key."""
    digest = hashlib.blake2b(os.fsencode(os.path.abspath(path)), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little")


class ImageCache:
    """Source images of one short side and channel count under ``folder``; see the module docstring.

    Picklable (DataLoader workers started by spawn): each process opens its own files on first use. Not
    thread-safe: one instance per process, as DataLoader workers have.

    Args:
        folder: the ``--cache`` folder (created on the first write).
        short_side: the short side of the stored images.
        channels: 1 or 3.
    """

    def __init__(self, folder: str | os.PathLike[str], short_side: int, channels: int) -> None:
        if short_side < 1 or channels not in (1, 3):
            raise ValueError(f"a cache needs a positive short side and 1 or 3 channels, got short side "
                             f"{short_side!r} and {channels!r} channels")
        self.root = Path(folder)
        self.folder = self.root / f"v{FORMAT_VERSION}-short{short_side}-c{channels}"
        self.short_side, self.channels = short_side, channels
        self.header = HEADER.pack(MAGIC, FORMAT_VERSION, short_side, channels, RECORD.itemsize)
        self.hits = self.misses = 0  # this process's, since it opened the cache
        self._state: _State | None = None

    def __getstate__(self) -> dict:
        # open files and maps stay in the process that opened them; the counts are per process
        return {**self.__dict__, "_state": None, "hits": 0, "misses": 0}

    def load(self, path: str, decode: Callable[[str], Tensor]) -> Tensor:
        """The cached image of ``path`` if its entry is valid, else ``decode(path)``, stored for next time."""
        try:
            before = os.stat(path)
        except OSError:
            return decode(path)  # missing or unreadable: the decoder raises with the reason
        image = self.get(path, before)
        if image is not None:
            self.hits += 1
            return image
        self.misses += 1
        image = decode(path)
        try:
            after = os.stat(path)
        except OSError:  # removed while it was decoded: nothing to store it as
            return image
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):  # not rewritten meanwhile
            self.put(path, after, image)
        return image

    def get(self, path: str, stat: os.stat_result) -> Tensor | None:
        """The stored image of ``path`` as it was when it had ``stat``'s size and mtime, or None."""
        key, key2 = path_key(path)
        return self._process_state().find(key, key2, stat.st_size, stat.st_mtime_ns)

    def put(self, path: str, stat: os.stat_result, image: Tensor) -> bool:
        """Store ``image`` (uint8 (C, H, W)) as ``path`` with ``stat``'s size and mtime; False if it could not be
        written (the first failure is logged, and this process stops writing)."""
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != self.channels:
            raise ValueError(f"the cache stores uint8 ({self.channels}, H, W) images, got {image.dtype} "
                             f"{tuple(image.shape)}")
        key, key2 = path_key(path)
        try:
            return self._process_state().store(key, key2, stat, image)
        except OSError as e:
            self._process_state().writable = False
            reason = f"{e.strerror}: {e.filename}" if e.strerror and e.filename else str(e)
            log.warning("--cache %s: cannot write (%s); training goes on, decoding the images that are not cached",
                        self.root, reason)
            return False

    def _process_state(self) -> _State:
        if self._state is None or self._state.pid != os.getpid():  # a forked worker opens files of its own
            self._state = _State(self.folder, self.header)
        return self._state


class _Shard:
    """One writer's two files, memory-mapped for reading."""

    def __init__(self, folder: Path, name: str, header: bytes) -> None:
        self.index_path, self.data_path = folder / f"{name}.index", folder / f"{name}.data"
        self.header = header
        self.records = np.empty(0, dtype=RECORD)
        self.loaded = 0  # records already added to the lookup
        self.verified = np.zeros(0, dtype=bool)  # per record: its pixels matched their CRC in this process
        self.usable = True
        self._data: mmap.mmap | None = None

    def new_rows(self) -> np.ndarray:
        """The numbers of the valid records appended since the last call."""
        if not self.usable or not self._map_index():
            return np.empty(0, dtype=np.int64)
        fresh = self.records[self.loaded:]
        words = fresh.view("<u8").reshape(-1, 8)
        valid = np.flatnonzero(record_checksum(words) == words[:, 7]) + self.loaded
        # records after the last valid one may still be being written (a reader can see a write half done):
        # look at them again next time; a bad record with valid ones after it is skipped for good
        self.loaded = int(valid[-1]) + 1 if len(valid) else self.loaded
        return valid

    def record(self, row: int) -> np.void | None:
        if row >= len(self.records) and not self._map_index():
            return None
        return self.records[row] if row < len(self.records) else None

    def pixels(self, row: int, record: np.void) -> Tensor | None:
        """The image of record ``row`` if its bytes are all there and match its CRC.

        The CRC is checked on a process's first read of an entry only: the files are append-only, so bytes that
        matched once stay as they were (the check costs about as much as copying the image out).
        """
        h, w, c = int(record["height"]), int(record["width"]), int(record["channels"])
        start, count = int(record["offset"]), h * w * c
        if self._data is None or start + count > len(self._data):
            self._data = _map(self.data_path, self.header)
            if self._data is None or start + count > len(self._data):
                return None  # truncated, removed, or a foreign file
        view = np.frombuffer(self._data, dtype=np.uint8, count=count, offset=start)
        if row >= len(self.verified):
            self.verified = np.concatenate([self.verified, np.zeros(max(row + 1, 2 * len(self.verified)), bool)])
        if not self.verified[row]:
            if zlib.crc32(view) != int(record["crc"]):
                return None
            self.verified[row] = True
        return torch.from_numpy(view.reshape(h, w, c).copy()).permute(2, 0, 1)  # channels-last, as decoded

    def _map_index(self) -> bool:
        mapped = _map(self.index_path, self.header)
        if mapped is None:
            self.usable = False  # removed, or written by another format version, size or channel count
            return False
        whole = (len(mapped) - HEADER.size) // RECORD.itemsize  # a torn last record is left out
        self.records = np.frombuffer(mapped, dtype=RECORD, count=whole, offset=HEADER.size)
        return True


def _map(path: Path, header: bytes) -> mmap.mmap | None:
    """``path`` memory-mapped read-only if it starts with ``header``, else None."""
    try:
        with open(path, "rb") as f:
            if f.read(HEADER.size) != header:
                return None
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # the map outlives the descriptor
    except (OSError, ValueError):  # missing, unreadable, or empty
        return None


class _Writer:
    """This process's own data and index files, created on its first write, appended to (never rewritten)."""

    def __init__(self, folder: Path, header: bytes) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())  # processes of several machines may share DIR
        self.name = f"{host}-{os.getpid()}-{secrets.token_hex(4)}"
        self.data_fd = _create(folder / f"{self.name}.data", header)  # pixels first: an index never points ahead
        self.index_fd = _create(folder / f"{self.name}.index", header)
        self.offset = HEADER.size

    def append(self, pixels: np.ndarray, record: np.ndarray) -> None:
        """Append ``pixels``, then the ``record`` that points at them (its offset and checksum filled here)."""
        record["offset"] = self.offset
        words = record.view("<u8").reshape(1, 8)
        record["check"] = record_checksum(words)
        _write_all(self.data_fd, memoryview(pixels).cast("B"))
        self.offset += pixels.nbytes
        _write_all(self.index_fd, record.tobytes())


def _create(path: Path, header: bytes) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
    _write_all(fd, header)
    return fd


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _State:
    """One process's view of the cache: the shards it knows, a sorted key index, and its own writer."""

    def __init__(self, folder: Path, header: bytes) -> None:
        self.pid, self.folder, self.header = os.getpid(), folder, header
        self.shards: list[_Shard] = []
        self.shard_of: dict[str, int] = {}  # file name without suffix -> shard number
        self.sorted_keys = np.empty(0, dtype=np.uint64)
        self.sorted_refs = np.empty(0, dtype=np.int64)
        self.recent: dict[int, list[int]] = {}  # key -> refs, for entries found since the last sort
        self.recent_count = 0
        self.next_refresh = 0.0
        self.writer: _Writer | None = None
        self.writable = True

    def find(self, key: int, key2: int, size: int, mtime_ns: int) -> Tensor | None:
        for attempt in range(2):
            for ref in self._refs(key):
                shard, row = self.shards[ref >> _SHARD_BITS], ref & ((1 << _SHARD_BITS) - 1)
                record = shard.record(row)
                if (record is not None and int(record["key2"]) == key2 and int(record["size"]) == size
                        and int(record["mtime_ns"]) == mtime_ns):
                    pixels = shard.pixels(row, record)
                    if pixels is not None:
                        return pixels
            if attempt or time.monotonic() < self.next_refresh:
                return None
            self.refresh()
        return None

    def refresh(self) -> None:
        """Add the entries that other writers appended since the last look."""
        start = time.monotonic()
        try:
            names = [e.name[:-6] for e in os.scandir(self.folder) if e.name.endswith(".index")]
        except OSError:  # no cache yet, or not a folder (writing will say so)
            names = []
        for name in names:
            if name not in self.shard_of:
                self.shard_of[name] = len(self.shards)
                self.shards.append(_Shard(self.folder, name, self.header))
            number = self.shard_of[name]
            shard = self.shards[number]
            rows = shard.new_rows()
            self._add(number, rows, shard.records["key"][rows])
        self.next_refresh = time.monotonic() + max(REFRESH_S, 20 * (time.monotonic() - start))

    def store(self, key: int, key2: int, stat: os.stat_result, image: Tensor) -> bool:
        if not self.writable:
            return False
        if self.writer is None:
            self.writer = _Writer(self.folder, self.header)
            self.shard_of[self.writer.name] = len(self.shards)
            self.shards.append(_Shard(self.folder, self.writer.name, self.header))
        pixels = image.permute(1, 2, 0).contiguous().numpy()  # (H, W, C): no copy for a decoded image
        record = np.zeros(1, dtype=RECORD)
        fields = {"key": key, "key2": key2, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                  "height": pixels.shape[0], "width": pixels.shape[1], "channels": pixels.shape[2],
                  "crc": zlib.crc32(pixels)}
        for name, value in fields.items():
            record[name] = value
        self.writer.append(pixels, record)
        number = self.shard_of[self.writer.name]
        shard = self.shards[number]
        shard.loaded += 1  # this process knows the entry already: a refresh must not add it twice
        self._add(number, np.array([shard.loaded - 1]), np.array([key], dtype=np.uint64))
        return True

    def _refs(self, key: int) -> list[int]:
        """Where the entries of ``key`` are (usually one; a changed file has one per version)."""
        lo = np.searchsorted(self.sorted_keys, np.uint64(key), "left")
        hi = np.searchsorted(self.sorted_keys, np.uint64(key), "right")
        return self.sorted_refs[lo:hi].tolist() + self.recent.get(key, [])

    def _add(self, number: int, rows: np.ndarray, keys: np.ndarray) -> None:
        """Make the entries ``rows`` of shard ``number``, with these ``keys``, findable."""
        if not len(rows):
            return
        refs = (np.int64(number) << _SHARD_BITS) | rows.astype(np.int64)
        self.recent_count += len(rows)
        if self.recent_count <= max(_MERGE_MIN, len(self.sorted_keys) // 4):
            for k, r in zip(keys.tolist(), refs.tolist()):
                self.recent.setdefault(k, []).append(r)
            return
        # merge everything into the sorted arrays: O(log n) merges in all as the cache grows
        recent_keys = [k for k, rs in self.recent.items() for _ in rs]
        recent_refs = [r for rs in self.recent.values() for r in rs]
        all_keys = np.concatenate([self.sorted_keys, np.array(recent_keys, dtype=np.uint64),
                                   keys.astype(np.uint64)])
        all_refs = np.concatenate([self.sorted_refs, np.array(recent_refs, dtype=np.int64), refs])
        order = np.argsort(all_keys, kind="stable")
        self.sorted_keys, self.sorted_refs = all_keys[order], all_refs[order]
        self.recent, self.recent_count = {}, 0
