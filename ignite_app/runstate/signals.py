"""SIGTERM and SIGINT during training: finish the iteration, save a checkpoint, stop with 128 + signal number.

Schedulers (SLURM, Kubernetes, spot instances) send SIGTERM before they kill a job; Ctrl-C sends SIGINT. Either
one lets the current iteration finish, writes a training checkpoint, flushes TensorBoard and ends the run, so that
``--resume auto`` continues it exactly. A second signal stops at once (:class:`StopNow`), with the same exit code.

A handler that calls ``trainer.terminate()`` in the middle of an epoch stops the run too (:func:`attach_handler_stop`):
a checkpoint is written at that point, so the run can be resumed from there.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import ignite.distributed as idist
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from ignite_app.recipe.accumulation import at_step_boundary

log = logging.getLogger("ignite_app")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopNow(BaseException):
    """A second stop signal: leave at once. A ``BaseException``, like ``KeyboardInterrupt``, so that no
    ``except Exception`` on the way swallows it; the command line turns it into exit code 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"stopped at once by a second {signal.Signals(signum).name}")


class GracefulStop:
    """Records a stop signal; :meth:`requested` tells the training loop (all ranks agree on the answer)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.stopped_at: int | None = None  # the iteration after which the run was stopped
        self._previous: dict[int, Any] = {}
        self._owner = os.getpid()
        self._group: Any = None  # the process group that reduces the flags (None: the default one)

    def install(self) -> None:
        """Catch the stop signals (only possible in the main thread; elsewhere the defaults stay)."""
        if threading.current_thread() is threading.main_thread():
            self._owner = os.getpid()
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._on_signal)

    def uninstall(self) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._owner:
            # A data-loading worker forked from the training process inherits this handler, and Ctrl-C reaches the
            # whole process group: the worker carries on serving batches, the training process does the stopping.
            return
        if self.signum is not None:  # asked twice: the user wants out now
            self.uninstall()
            raise StopNow(signum)
        self.signum = signum
        log.warning("%s received: finishing the current iteration, then saving a checkpoint (send it again to "
                    "stop at once)", signal.Signals(signum).name)

    def requested(self) -> bool:
        """Whether any process received a stop signal (a collective call when several processes train).

        Ranks get the signal at slightly different moments; they must stop after the same iteration, or the
        collective checkpoint would deadlock. The flags are reduced on the CPU, through a gloo process group (the
        default one under gloo, a side group under nccl): a per-iteration reduction of a GPU tensor would make
        the host wait for the GPU on every step.
        """
        local = self.signum or 0
        if idist.get_world_size() > 1:
            flag = torch.tensor([local], dtype=torch.int32)  # on the CPU, whatever the training device
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
            local = int(flag)
            if local and self.signum is None:
                self.signum = local
        return local != 0

    def join_processes(self) -> None:
        """Set up the CPU-side reduction of :meth:`requested` (a collective call: every rank makes it, once)."""
        if idist.get_world_size() > 1 and dist.get_backend() != "gloo":
            self._group = dist.new_group(backend="gloo")


def attach_graceful_stop(trainer: Engine, save: Callable[[Engine], None]) -> GracefulStop:
    """Stop after the current iteration on SIGTERM/SIGINT, saving with ``save(trainer)`` first.

    Attach after the training checkpoint: on an epoch's last iteration the stop waits for the epoch-end handlers
    (validation, epoch checkpoint) rather than saving a half-finished epoch.
    """
    stop = GracefulStop()
    stop.join_processes()

    def after_iteration(engine: Engine) -> None:
        # (gradient accumulation) only between two groups of batches, where a checkpoint can describe the run
        if engine.state.iteration % engine.state.epoch_length != 0 and at_step_boundary(engine) and \
                stop.requested():
            save(engine)
            stop.stopped_at = engine.state.iteration
            engine.terminate(skip_completed=True)

    def after_epoch(engine: Engine) -> None:
        last_epoch = engine.state.epoch == engine.state.max_epochs
        if stop.requested() and not last_epoch:  # on the last epoch the run is about to end anyway
            stop.stopped_at = engine.state.iteration
            engine.terminate(skip_completed=True)

    trainer.add_event_handler(Events.ITERATION_COMPLETED, after_iteration)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, after_epoch)
    return stop


class HandlerStop:
    """Where a handler's ``trainer.terminate()`` stopped the run, and whether a checkpoint was written there."""

    def __init__(self) -> None:
        self.stopped_at: int | None = None  # the trainer's iteration when a handler stopped the run
        self.saved = False  # whether the run can be resumed from exactly that iteration
        self.unsaved_reason = ""  # (not saved) why no checkpoint could be written there
        self.completed_epoch = 0  # the last epoch whose end-of-epoch handlers (validation, checkpoint) all ran


def attach_handler_stop(trainer: Engine, save: Callable[[Engine], None], graceful: GracefulStop,
                        finished: Callable[[], bool]) -> HandlerStop:
    """Write a checkpoint when a handler terminates the run, so that it can be resumed where it stopped.

    ignite ends the run after the current event when any handler calls ``trainer.terminate()``; without this, a
    stop in the middle of an epoch would leave only the previous checkpoint. Attach after every other
    ``EPOCH_COMPLETED`` handler (the epoch's checkpoint is then written already).

    Args:
        trainer: the training engine.
        save: writes a training checkpoint of the trainer's current state.
        graceful: the signal stop, which saves by itself.
        finished: whether the run stopped because it is complete (early stopping, say): not a handler stop.
    """
    stop = HandlerStop()

    def epoch_done(engine: Engine) -> None:
        stop.completed_epoch = engine.state.epoch

    def terminated(engine: Engine) -> None:
        if graceful.stopped_at is not None or finished():
            return
        stop.stopped_at = engine.state.iteration
        if stop.completed_epoch == engine.state.epoch:  # at an epoch's end: its checkpoint is written already
            stop.saved = True
        elif engine.state.iteration % engine.state.epoch_length == 0:
            stop.unsaved_reason = "it ended an epoch before its validation"
        elif not at_step_boundary(engine):
            stop.unsaved_reason = "it stopped inside a group of --accumulate-steps batches"
        else:
            save(engine)
            stop.saved = True

    trainer.add_event_handler(Events.EPOCH_COMPLETED, epoch_done)
    trainer.add_event_handler(Events.TERMINATE, terminated)
    return stop
