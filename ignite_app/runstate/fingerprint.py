"""A fingerprint of a run's data, so that a resume on changed data is refused with what changed.

For image folders, the fingerprint is the table of every training and validation file: its split, its path
relative to ``--data-dir`` (a moved data folder still matches), its class and its size in bytes. Checkpoints hold the
table's digest; the run folder holds the table itself (``data_files.csv.gz``), so that a refused resume can say which
files were added, removed, moved to another class or changed. Datasets held in memory (digits, synthetic) are
fingerprinted by the digest of their tensors.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ignite_app.runstate.fileio import atomic_write

EXAMPLES = 3  # files named per kind of change


@dataclass(frozen=True)
class FileRow:
    """One file of the data: which split, where (relative to the data folder), which class, how many bytes."""

    split: str
    path: str
    label: str
    size: int


@dataclass(frozen=True)
class DataFingerprint:
    """The digest that checkpoints hold, and (for files) the table it was computed from."""

    digest: str
    files: tuple[FileRow, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """What a checkpoint stores: the digest and the number of files."""
        return {"digest": self.digest, "files": len(self.files)}


def file_fingerprint(data_dir: Path, splits: dict[str, Sequence[tuple[str, int]]],
                     classes: Sequence[str]) -> DataFingerprint:
    """The fingerprint of image files: ``splits`` maps ``train``/``val`` to ``(path, class index)`` samples."""
    rows = tuple(FileRow(split, os.path.relpath(path, data_dir), classes[label], os.stat(path).st_size)
                 for split, samples in splits.items() for path, label in samples)
    return DataFingerprint(_digest(_table_text(rows).encode("utf-8")), rows)


def tensor_fingerprint(*tensors: torch.Tensor) -> DataFingerprint:
    """The fingerprint of data held in memory: a digest of its tensors' values and shapes."""
    h = hashlib.blake2b(digest_size=32)  # ~2x faster than sha256 on the synthetic set's 120 MB
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return DataFingerprint(h.hexdigest())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _table_text(rows: Sequence[FileRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("split", "path", "label", "size"))
    writer.writerows((r.split, r.path, r.label, r.size) for r in rows)
    return out.getvalue()


def write_file_table(path: Path, fingerprint: DataFingerprint) -> None:
    """Write the file table (gzip-compressed CSV) atomically; nothing for data held in memory."""
    if fingerprint.files:
        text = _table_text(fingerprint.files).encode("utf-8")
        atomic_write(path, lambda f: f.write(gzip.compress(text, compresslevel=6, mtime=0)))


def read_file_table(path: Path) -> tuple[FileRow, ...] | None:
    """The table :func:`write_file_table` wrote, or ``None`` when it is missing or unreadable."""
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
        rows = list(csv.reader(io.StringIO(text)))[1:]
        return tuple(FileRow(split, p, label, int(size)) for split, p, label, size in rows)
    except (OSError, EOFError, ValueError, UnicodeDecodeError):
        return None


def describe_changes(old: Sequence[FileRow], new: Sequence[FileRow]) -> list[str]:
    """What changed between two file tables, one line per kind of change with a few examples."""
    before = {r.path: r for r in old}
    after = {r.path: r for r in new}
    removed = [before[p] for p in before.keys() - after.keys()]
    added = [after[p] for p in after.keys() - before.keys()]
    # a file that left one class folder and appeared, with the same name and size, in another was relabelled
    arrivals = {(os.path.basename(r.path), r.size): r for r in added}
    moved = [(r, arrivals[key]) for r in removed
             if (key := (os.path.basename(r.path), r.size)) in arrivals and arrivals[key].label != r.label]
    moved_from = {a.path for a, _ in moved}
    moved_to = {b.path for _, b in moved}
    removed = sorted((r for r in removed if r.path not in moved_from), key=lambda r: r.path)
    added = sorted((r for r in added if r.path not in moved_to), key=lambda r: r.path)
    common = sorted(before.keys() & after.keys())
    resized = [p for p in common if before[p].size != after[p].size]
    resplit = [p for p in common if before[p].split != after[p].split]
    lines = []
    if added:
        lines.append(_line(len(added), "added", [f"{r.path} ({r.split})" for r in added]))
    if removed:
        lines.append(_line(len(removed), "removed", [f"{r.path} ({r.split})" for r in removed]))
    if moved:
        lines.append(_line(len(moved), "moved to another class",
                           [f"{a.path} -> {b.path} ({a.label} -> {b.label})" for a, b in sorted(moved, key=lambda m: m[0].path)]))
    if resized:
        lines.append(_line(len(resized), "changed (another size)",
                           [f"{p} ({before[p].size} -> {after[p].size} bytes)" for p in resized]))
    if resplit:
        lines.append(_line(len(resplit), "moved between training and validation",
                           [f"{p} ({before[p].split} -> {after[p].split})" for p in resplit]))
    return lines


def _line(count: int, what: str, examples: list[str]) -> str:
    shown = ", ".join(examples[:EXAMPLES]) + (", ..." if count > EXAMPLES else "")
    return f"{count} file{'s' if count != 1 else ''} {what}: {shown}"
