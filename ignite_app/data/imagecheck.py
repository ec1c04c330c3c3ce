"""``--check-images``: decode every image of a folder dataset once, before anything is written.

Without it, unreadable files are found when they are loaded (:mod:`ignite_app.data.badimages`); this opt-in pass
finds them all before the start instead, at the cost of about one epoch of loading: refused, or left out with
``--on-bad-image skip`` (and then a class left without training images, or a validation set left empty, is refused
too). With several training processes, each decodes every N-th file and the results are gathered, so that every
process ends with the same complete results in 1/N of the time. Within a process the files are decoded in
``--num-workers`` processes, as in training. The results depend on neither number (put back in file order).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ignite.distributed as idist
import numpy as np
from torch.utils.data import DataLoader, Dataset

from ignite_app.data.badimages import bad_images_message, bad_listing
from ignite_app.data.decode import UnreadableImage, decode_image
from ignite_app.data.pipeline import FileTable
from ignite_app.data.scan import FolderScan
from ignite_app.errors import DataError

log = logging.getLogger("ignite_app")


@dataclass(frozen=True)
class CheckedImages:
    """The samples that decoded, and the ones left out."""

    train: FileTable
    val: FileTable
    skipped: list[UnreadableImage]


class _Probe(Dataset):
    """Item k decodes file ``indices[k]`` = i of ``tables`` (one after the other) and returns ``(i, reason or
    None)``; never raises for a bad file."""

    def __init__(self, tables: tuple[FileTable, FileTable], indices: range, channels: int, short_side: int) -> None:
        self.tables, self.indices, self.channels, self.short_side = tables, indices, channels, short_side

    def __len__(self) -> int:
        return len(self.indices)

    def path(self, i: int) -> str:
        first = self.tables[0]
        return first.path(i) if i < len(first) else self.tables[1].path(i - len(first))

    def __getitem__(self, k: int) -> tuple[int, str | None]:
        i = self.indices[k]
        try:
            decode_image(self.path(i), self.channels, self.short_side)
        except UnreadableImage as e:
            return i, e.reason
        return i, None


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def check_images(scan: FolderScan, channels: int, short_side: int, on_bad_image: str, num_workers: int = 0,
                 listed_in: str = "train.log") -> CheckedImages:
    """Decode every image of ``scan``.

    Args:
        scan: the images found.
        channels: 1 or 3, as in training.
        short_side: the source images' short side (decoding may take a reduced JPEG path to it, as in training).
        on_bad_image: ``error`` refuses any unreadable file; ``skip`` leaves them out and returns them.
        num_workers: decoding processes (0: this process).
        listed_in: where skipped files are listed, for the message.

    Raises:
        DataError: unreadable images with ``on_bad_image="error"`` (all of them listed, up to a limit), or a class
            left without training images once they are skipped.
    """
    total = len(scan.train) + len(scan.val)
    rank, world = idist.get_rank(), idist.get_world_size()
    log.info("checking %d images (--check-images): each is decoded once before use%s", total,
             f", split between {world} processes" if world > 1 else "")
    probe = _Probe((scan.train, scan.val), range(rank, total, world), channels, short_side)
    loader = DataLoader(probe, batch_size=64, num_workers=num_workers, collate_fn=_as_list)
    results = [item for batch in loader for item in batch]
    if world > 1:  # every process gets every result, and so takes the same decisions below
        results = [item for part in idist.all_gather(results) for item in part]
    bad = [UnreadableImage(probe.path(i), reason) for i, reason in sorted(results) if reason is not None]
    if bad and on_bad_image == "error":
        raise DataError(bad_images_message(bad, listed_in=listed_in))
    unreadable = {b.path for b in bad}

    def readable(table: FileTable) -> FileTable:
        return table.take([i for i, (path, _) in enumerate(table.items()) if path not in unreadable]) if bad \
            else table

    train, val = readable(scan.train), readable(scan.val)
    if bad:
        # only the count here: a training run lists the files once its train.log exists (see app.log_start)
        log.warning("skipping %d unreadable image%s (--on-bad-image skip)", len(bad), "" if len(bad) == 1 else "s")
    _check_left(scan, train, val, bad)
    return CheckedImages(train, val, bad)


def _check_left(scan: FolderScan, train: FileTable, val: FileTable, bad: list[UnreadableImage]) -> None:
    """After skipping: every class still has training images (when training) and something is left to validate."""
    if len(scan.train):
        left = set(np.unique(train.labels).tolist())
        empty = [name for i, name in enumerate(scan.classes) if i not in left]
        if empty:
            raise DataError(f"class {empty[0]!r} has no readable training image left once the {len(bad)} unreadable "
                            f"ones are skipped:\n  {bad_listing(bad)}\nreplace them with readable images")
    if not len(val):
        raise DataError(f"no readable validation image is left once the {len(bad)} unreadable ones are "
                        f"skipped:\n  {bad_listing(bad)}\nreplace them with readable images")
