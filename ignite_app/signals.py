"""SIGTERM and SIGINT during training: finish the iteration, save a checkpoint, stop with 128 + signal number.

Schedulers (SLURM, Kubernetes, spot instances) send SIGTERM before they kill a job; Ctrl-C sends SIGINT. Either
one lets the current iteration finish, writes a training checkpoint, flushes TensorBoard and ends the run, so that
``--resume auto`` continues it exactly. A second signal stops at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events

log = logging.getLogger("ignite_app")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop:
    """Records a stop signal; :meth:`requested` tells the training loop (all ranks agree on the answer)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.stopped_at: int | None = None  # the iteration after which the run was stopped
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Catch the stop signals (only possible in the main thread; elsewhere the defaults stay)."""
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._on_signal)

    def uninstall(self) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # asked twice: the user wants out now
            self.uninstall()
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s received: finishing the current iteration, then saving a checkpoint (send it again to "
                    "stop at once)", signal.Signals(signum).name)

    def requested(self) -> bool:
        """Whether any process received a stop signal (a collective call when several processes train)."""
        local = self.signum or 0
        if idist.get_world_size() > 1:
            # Ranks get the signal at slightly different moments; they must stop after the same iteration, or
            # the collective checkpoint would deadlock. One tiny all-reduce per iteration is the price.
            local = int(idist.all_reduce(torch.tensor(local, device=idist.device()), op="MAX"))
            if local and self.signum is None:
                self.signum = local
        return local != 0


def attach_graceful_stop(trainer: Engine, save: Callable[[Engine], None]) -> GracefulStop:
    """Stop after the current iteration on SIGTERM/SIGINT, saving with ``save(trainer)`` first.

    Attach after the training checkpoint: on an epoch's last iteration the stop waits for the epoch-end handlers
    (validation, epoch checkpoint) rather than saving a half-finished epoch.
    """
    stop = GracefulStop()

    def after_iteration(engine: Engine) -> None:
        if engine.state.iteration % engine.state.epoch_length != 0 and stop.requested():
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
