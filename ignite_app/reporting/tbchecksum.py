"""Fast checksums for TensorBoard event files.

Every record of an event file carries a masked CRC-32C of its bytes. Without TensorFlow, the ``tensorboard`` package
computes it in pure Python, byte by byte: ~8 ms for one 45 kB heatmap PNG, 15 ms at 100 classes. That is more than
drawing the heatmap, and it runs on TensorBoard's writer thread, which holds the interpreter lock while the training
loop waits for it. :func:`use_fast_checksums` points TensorBoard's writer and reader at ``google-crc32c``'s C
implementation instead (the same values, ~0.02 ms). Reading benefits too: a resumed run reads its event file to drop
the events written after its checkpoint.

This replaces a name inside two tensorboard modules, so it is switched on explicitly (the app does it once, before
it writes or reads an event file), checks that both names are still there, and otherwise keeps tensorboard's own
function with a one-line warning.
"""

from __future__ import annotations

import importlib
import logging

import google_crc32c

log = logging.getLogger("ignite_app")

_MASK = 0xFFFFFFFF
_MASK_DELTA = 0xA282EAD8  # the TFRecord format's mask
# The tensorboard modules whose `masked_crc32c` the writer and the reader call (each calls the name it imported).
PATCHED = ("tensorboard.summary.writer.record_writer", "tensorboard.compat.tensorflow_stub.pywrap_tensorflow")


def masked_crc32c(data: bytes) -> int:
    """The TFRecord format's masked CRC-32C of ``data``, equal to ``tensorboard``'s own function."""
    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _MASK


def use_fast_checksums() -> bool:
    """Make TensorBoard's event-file writer and reader use :func:`masked_crc32c` (idempotent, process-wide).

    Returns whether it did. It does not when ``google-crc32c`` has no compiled extension (no faster), or when
    tensorboard no longer has the functions it replaces (a version that moved them): then tensorboard's own function
    stays, slower but correct, and a warning says so.
    """
    if google_crc32c.implementation != "c":
        return False
    try:
        modules = [importlib.import_module(name) for name in PATCHED]
    except ImportError as e:
        log.warning("warning: TensorBoard's event-file checksums stay in pure Python (slower): %s", e)
        return False
    missing = [m.__name__ for m in modules if not callable(getattr(m, "masked_crc32c", None))]
    if missing:
        log.warning("warning: TensorBoard's event-file checksums stay in pure Python (slower): %s has no "
                    "masked_crc32c in this tensorboard version", ", ".join(missing))
        return False
    for module in modules:
        module.masked_crc32c = masked_crc32c  # type: ignore[attr-defined]
    return True
