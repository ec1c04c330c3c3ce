"""TensorBoard event files of a resumed run: drop what the interrupted process wrote after its checkpoint.

``SummaryWriter(purge_step=...)`` cannot do this here: TensorBoard applies a purge step to every tag alike, while
this app logs ``train/loss`` by iteration and the epoch scalars by epoch. A checkpoint records the wall-clock time
at which it was taken instead, and every event stamped later is removed, whatever its step counts. The files are
rewritten atomically, so an interruption during the purge loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ignite_app.runstate.fileio import atomic_write

if TYPE_CHECKING:
    from tensorboard.compat.proto.event_pb2 import Event

log = logging.getLogger("ignite_app")

EVENT_FILE_GLOB = "events.out.tfevents.*"


def purge_events_after(folder: Path, wall_time: float, also: Callable[[Event], bool] | None = None) -> int:
    """Remove the summaries written after ``wall_time`` from the event files directly in ``folder``.

    ``also`` selects further summaries to remove, whatever their time: those the resumed run writes again (see
    :func:`ignite_app.reporting.tensorboard.pending_report_events`). Returns the number of summaries removed. Files with
    nothing to remove are left untouched.
    """
    from tensorboard.backend.event_processing.event_file_loader import (
        RawEventFileLoader,
    )
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    removed = 0
    for path in sorted(Path(folder).glob(EVENT_FILE_GLOB)):
        kept: list[bytes] = []
        dropped = 0
        for record in RawEventFileLoader(str(path)).Load():
            event = Event.FromString(record)
            if event.HasField("summary") and (event.wall_time > wall_time or (also is not None and also(event))):
                dropped += 1
            else:
                kept.append(record)
        if dropped:
            def write(f, records: list[bytes] = kept) -> None:
                writer = RecordWriter(f)
                for r in records:
                    writer.write(r)

            atomic_write(path, write)
            removed += dropped
    if removed:
        log.info("TensorBoard: removed %d points written after the checkpoint", removed)
    return removed
