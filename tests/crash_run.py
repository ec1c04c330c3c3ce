"""Test helper: run scripts/train.py's ``main`` and hit the process with a real signal at a chosen point.

    CRASH_AT=<point> python tests/crash_run.py [train.py options...]

Points (the signal is SIGKILL unless CRASH_SIGNAL names another, e.g. SIGTERM):
    iteration:N         after training iteration N
    validation:E        during the validation of epoch E
    after_best:E        right after best_model.pt was written at epoch E, before the epoch's training checkpoint
    write:NAME          half-way through writing checkpoint file NAME (e.g. training_12.pt, best_model.pt)

The app runs unmodified; the helper only attaches one extra handler or wraps the file write to pick the moment.
Before a kill at an iteration, a validation or after the best model, it waits for the checkpoints already handed to
the writer thread, so that which files exist at the kill is the same on every run (a kill inside a write is what
``write:NAME`` tests).
"""

import io
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ignite.engine import Events  # noqa: E402

import ignite_app.app as app_module  # noqa: E402
import ignite_app.runstate.checkpoint as checkpoint_module  # noqa: E402
from ignite_app.cli.train import main  # noqa: E402

POINT, _, ARG = os.environ["CRASH_AT"].partition(":")
SIGNAL = getattr(signal, os.environ.get("CRASH_SIGNAL", "SIGKILL"))


def hit(*_: object) -> None:
    os.kill(os.getpid(), SIGNAL)


def hit_after_writes(app):
    def kill(*_: object) -> None:
        app.handlers.training_checkpoint.save_handler.wait()
        hit()

    return kill


def build_with_trigger(config):
    app = real_build(config)
    trainer, evaluator = app.trainer, app.evaluator
    kill = hit_after_writes(app) if SIGNAL == signal.SIGKILL else hit  # a stop signal waits by itself
    if POINT == "iteration":
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=int(ARG)), kill)
    elif POINT == "validation":
        evaluator.add_event_handler(Events.ITERATION_COMPLETED,
                                    lambda e: kill() if trainer.state.epoch == int(ARG) else None)
    elif POINT == "after_best":
        evaluator.add_event_handler(Events.COMPLETED, lambda e: kill() if trainer.state.epoch == int(ARG) else None)
    return app


def half_write(path, write):
    """The app's own atomic_write, killed when half of the file's bytes are on disk."""
    if Path(path).name != ARG:
        return real_atomic_write(path, write)

    def killed_half_way(f):
        buffer = io.BytesIO()
        write(buffer)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        hit()

    return real_atomic_write(path, killed_half_way)


real_build, real_atomic_write = app_module.build, checkpoint_module.atomic_write
app_module.build = build_with_trigger
if POINT == "write":
    checkpoint_module.atomic_write = half_write

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
