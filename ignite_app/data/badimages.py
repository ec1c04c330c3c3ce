"""Unreadable image files, found when they are loaded: what ``--on-bad-image error|skip`` does with them.

Nothing decodes every image before training (that is ``--check-images``, opt-in). A file that cannot be decoded
is met by a loader, which carries it out of band in its :class:`~ignite_app.data.pipeline.Batch` (see
:mod:`ignite_app.data.pipeline`); :class:`BadImages` reads it on ``GET_BATCH_COMPLETED``, before the step:

- ``error``: the run stops there with a :class:`~ignite_app.errors.DataError` (exit code 2) naming the file and the
  fix; the last checkpoint stays as it was, so the run can be continued.
- ``skip``: a training sample was replaced by another one chosen from its ``(index, seed)`` (the same on every rank
  and on a resume, so exact resume holds); a validation image was left out of its batch, and every other one is
  still counted exactly once. Each file is listed once in ``train.log``; TensorBoard's ``data/skipped_images``
  counts the images skipped in each epoch (training and validation, all processes); the evaluator's
  ``state.dropped_images`` is the number of validation images left out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import ignite.distributed as idist
from ignite.engine import Engine, Events

from ignite_app.errors import DataError

log = logging.getLogger("ignite_app")

SKIPPED_TAG = "data/skipped_images"
MAX_LISTED = 10  # files listed in one message


def bad_listing(bad: Sequence[Any]) -> str:
    """``path: reason`` lines of unreadable files (anything whose ``str`` is that), up to :data:`MAX_LISTED`."""
    lines = [str(b) for b in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        lines.append(f"... and {len(bad) - MAX_LISTED} more")
    return "\n  ".join(lines)


def bad_images_message(bad: Sequence[Any], what: str = "image", listed_in: str = "the log") -> str:
    """The refusal of unreadable files: how many, which (up to a limit) and why, and the two ways out."""
    plural = len(bad) != 1
    return (f"{len(bad)} {what}{'s' if plural else ''} cannot be decoded:\n  {bad_listing(bad)}\nreplace or delete "
            f"{'them' if plural else 'it'}, or pass --on-bad-image skip to leave unreadable images out (they are "
            f"then listed in {listed_in})")


class BadImages:
    """Reads the unreadable files each batch carries; stops the run or counts and lists them (see the module).

    Args:
        policy: ``--on-bad-image``: ``error`` or ``skip``.
        writer: rank 0's TensorBoard ``SummaryWriter``, for ``data/skipped_images``; None: not written.
        stop_fix: the end of the ``error`` message: how to go on (continue the run, evaluate without the file...).
    """

    def __init__(self, policy: str, writer: Any = None,
                 stop_fix: str = "replace or delete the file, or pass --on-bad-image skip") -> None:
        self.policy, self.writer, self.stop_fix = policy, writer, stop_fix
        self.replaced = 0  # training samples replaced in this epoch, by this process
        self.dropped = 0  # validation images left out in this validation, by this process
        self.listed: dict[str, str] = {}  # every file listed so far (path -> reason), all processes
        self._new: dict[str, str] = {}  # files met by this process since the last listing

    def check(self, engine: Engine, validation: bool) -> None:
        """``GET_BATCH_COMPLETED``: stop on an unreadable file (``error``), or count it (``skip``)."""
        batch = engine.state.batch
        bad = getattr(batch, "unreadable", ())
        if not bad:
            return
        if self.policy == "error":
            kind = "validation" if validation else "training"
            raise DataError(f"{kind} image {bad[0].path} cannot be decoded ({bad[0].reason}); {self.stop_fix}"
                            if len(bad) == 1 else f"{len(bad)} {kind} images cannot be decoded:\n  "
                            f"{bad_listing(bad)}\n{self.stop_fix}")
        for b in bad:
            if b.path not in self.listed:
                self._new[b.path] = b.reason
        if validation:
            self.dropped += len(bad)
            return
        self.replaced += len(bad)
        if len(batch[1]) == 0:  # every sample of the batch, and its replacements, unreadable
            raise DataError(f"every image tried for a training batch cannot be decoded, e.g.:\n  "
                            f"{bad_listing(bad)}\nthe data is mostly unreadable: replace the files")

    def start_epoch(self, trainer: Engine) -> None:
        if trainer.state.iteration % trainer.state.epoch_length == 0:  # not when resuming inside the epoch
            self.replaced = 0

    def start_validation(self, evaluator: Engine) -> None:
        self.dropped = 0

    def complete_validation(self, evaluator: Engine) -> None:
        """``COMPLETED`` of the evaluator (a collective call): the validation images left out, all processes."""
        dropped = int(idist.all_reduce(self.dropped)) if idist.get_world_size() > 1 else self.dropped
        evaluator.state.dropped_images = dropped
        if dropped:
            log.warning("validation left out %d unreadable image%s (--on-bad-image skip); every other validation "
                        "image is counted once", dropped, "" if dropped == 1 else "s")
        self.list_new()

    def complete_epoch(self, trainer: Engine, evaluator: Engine | None = None) -> None:
        """``EPOCH_COMPLETED`` of the trainer, after the validation (a collective call): count and list."""
        replaced = int(idist.all_reduce(self.replaced)) if idist.get_world_size() > 1 else self.replaced
        if replaced:
            log.warning("epoch %d: replaced %d unreadable training image%s by other samples (--on-bad-image skip)",
                        trainer.state.epoch, replaced, "" if replaced == 1 else "s")
        self.list_new()
        dropped = getattr(evaluator.state, "dropped_images", 0) if evaluator is not None else 0
        if self.writer is not None:
            self.writer.add_scalar(SKIPPED_TAG, replaced + dropped, trainer.state.epoch)

    def list_new(self) -> None:
        """List the files met for the first time, by any process, once (a collective call)."""
        parts = idist.all_gather(self._new) if idist.get_world_size() > 1 else [self._new]
        self._new = {}
        found = dict(sorted((path, reason) for part in parts for path, reason in part.items()
                            if path not in self.listed))
        if found:
            self.listed.update(found)
            log.warning("unreadable image%s (--on-bad-image skip):\n  %s", "" if len(found) == 1 else "s",
                        "\n  ".join(f"{path}: {reason}" for path, reason in found.items()))

    def lines(self) -> list[str]:
        """``path: reason`` of every file listed so far."""
        return [f"{path}: {reason}" for path, reason in self.listed.items()]

    def state_dict(self) -> dict[str, Any]:
        """The training samples replaced so far in the epoch, all processes (a collective call)."""
        return {"replaced": int(idist.all_reduce(self.replaced)) if idist.get_world_size() > 1 else self.replaced}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # the saved count is global: rank 0 carries it, the other ranks restart from zero
        self.replaced = int(state["replaced"]) if idist.get_rank() == 0 else 0


def attach_bad_images(evaluator: Engine, trainer: Engine | None, policy: str, writer: Any = None,
                      stop_fix: str = "replace or delete the file, or pass --on-bad-image skip") -> BadImages:
    """Check every batch of ``evaluator`` (and of ``trainer``, when training) for unreadable files; count, list and
    log the skipped ones at the end of each validation and epoch. Attach after the validation handler."""
    handler = BadImages(policy, writer, stop_fix)
    evaluator.add_event_handler(Events.GET_BATCH_COMPLETED, handler.check, True)
    evaluator.add_event_handler(Events.STARTED, handler.start_validation)
    evaluator.add_event_handler(Events.COMPLETED, handler.complete_validation)
    if trainer is not None:
        trainer.add_event_handler(Events.GET_BATCH_COMPLETED, handler.check, False)
        trainer.add_event_handler(Events.EPOCH_STARTED, handler.start_epoch)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, handler.complete_epoch, evaluator)
    return handler
