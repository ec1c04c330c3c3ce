"""The start-up pass over a folder dataset: decode every image once, before anything is written.

It finds the files that cannot be decoded (refused, or left out with ``--on-bad-image skip``) and sums the pixels
of the training images for the normalisation constants. With several training processes, each decodes every N-th
file and the results are gathered, so that every process ends with the same complete results in 1/N of the time.
Within a process the files are decoded in ``--num-workers`` processes, as in training. The results depend on
neither number (integer sums, results put back in file order).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ignite.distributed as idist
from torch.utils.data import DataLoader, Dataset

from ignite_app.data.scan import MAX_LISTED, FolderScan, Sample
from ignite_app.data.transforms import ImageTransform, PixelStats, UnreadableImage, load_image
from ignite_app.errors import DataError

log = logging.getLogger("ignite_app")



@dataclass(frozen=True)
class CheckedImages:
    """The samples that decoded, the ones left out, and the pixel sums of the training images."""

    train: list[Sample]
    val: list[Sample]
    skipped: list[UnreadableImage]
    stats: PixelStats


class _Probe(Dataset):
    """Item k decodes file ``indices[k]`` = i and returns ``(i, reason or None, pixel sums or None)``; never raises
    for a bad file."""

    def __init__(self, paths: list[str], indices: range, transform: ImageTransform, stats_below: int) -> None:
        self.paths, self.indices, self.transform = paths, indices, transform
        self.stats_below = stats_below

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, str | None, Any]:
        i = self.indices[k]
        try:
            t = self.transform
            image = load_image(self.paths[i], t.channels, t.size, t.crop_pct, t.interpolation)
        except UnreadableImage as e:
            return i, e.reason, None
        return i, None, PixelStats.of(image) if i < self.stats_below else None


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def bad_images_message(bad: list[UnreadableImage], what: str = "image", listed_in: str = "the log") -> str:
    """The refusal of unreadable files: how many, which (up to a limit) and why, and the two ways out."""
    plural = len(bad) != 1
    return (f"{len(bad)} {what}{'s' if plural else ''} cannot be decoded:\n  {_bad_listing(bad)}\nreplace or delete "
            f"{'them' if plural else 'it'}, or pass --on-bad-image skip to leave unreadable images out (they are "
            f"then listed in {listed_in})")


def check_images(scan: FolderScan, channels: int, size: int, on_bad_image: str, num_workers: int = 0,
                 with_stats: bool = True, listed_in: str = "train.log", crop_pct: float | None = None,
                 interpolation: str = "bilinear") -> CheckedImages:
    """Decode every image of ``scan``; sum the training pixels when ``with_stats``.

    Args:
        scan: the images found.
        channels: 1 or 3, as in training.
        size: the side images are resized to (the statistics are those of the resized images).
        on_bad_image: ``error`` refuses any unreadable file; ``skip`` leaves them out and returns them.
        num_workers: decoding processes (0: this process).
        with_stats: whether to sum the training pixels.
        listed_in: where skipped files are listed, for the message.
        crop_pct: (a pretrained network's configuration) see :class:`~ignite_app.data.transforms.ImageTransform`.
        interpolation: idem.

    Raises:
        DataError: unreadable images with ``on_bad_image="error"`` (all of them listed, up to a limit), or a class
            left without training images once they are skipped.
    """
    samples = scan.train + scan.val
    rank, world = idist.get_rank(), idist.get_world_size()
    log.info("checking %d images: each is decoded once before use%s", len(samples),
             f", split between {world} processes" if world > 1 else "")
    probe = _Probe([path for path, _ in samples], range(rank, len(samples), world),
                   ImageTransform(size, channels, crop_pct=crop_pct, interpolation=interpolation),
                   len(scan.train) if with_stats else 0)
    loader = DataLoader(probe, batch_size=64, num_workers=num_workers, collate_fn=_as_list)
    results = [item for batch in loader for item in batch]
    if world > 1:  # every process gets every result, and so takes the same decisions below
        results = [item for part in idist.all_gather(results) for item in part]
    results.sort()  # by file index: the order workers and processes finish in varies
    stats = PixelStats(channels)
    bad: list[UnreadableImage] = []
    for i, reason, sums in results:
        if reason is not None:
            bad.append(UnreadableImage(samples[i][0], reason))
        elif sums is not None:
            stats.add(*sums)
    if bad and on_bad_image == "error":
        raise DataError(bad_images_message(bad, listed_in=listed_in))
    unreadable = {b.path for b in bad}
    train = [s for s in scan.train if s[0] not in unreadable]
    val = [s for s in scan.val if s[0] not in unreadable]
    if bad:
        # only the count here: a training run lists the files once its train.log exists (see app.log_start)
        log.warning("skipping %d unreadable image%s (--on-bad-image skip)", len(bad), "" if len(bad) == 1 else "s")
    _check_left(scan, train, val, bad)
    return CheckedImages(train, val, bad, stats)


def _bad_listing(bad: list[UnreadableImage]) -> str:
    lines = [f"{b.path}: {b.reason}" for b in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        lines.append(f"... and {len(bad) - MAX_LISTED} more")
    return "\n  ".join(lines)


def _check_left(scan: FolderScan, train: list[Sample], val: list[Sample], bad: list[UnreadableImage]) -> None:
    """After skipping: every class still has training images (when training) and something is left to validate."""
    if scan.train:
        left = {label for _, label in train}
        empty = [name for i, name in enumerate(scan.classes) if i not in left]
        if empty:
            raise DataError(f"class {empty[0]!r} has no readable training image left once the {len(bad)} unreadable "
                            f"ones are skipped:\n  {_bad_listing(bad)}\nreplace them with readable images")
    if not val:
        raise DataError(f"no readable validation image is left once the {len(bad)} unreadable ones are "
                        f"skipped:\n  {_bad_listing(bad)}\nreplace them with readable images")
