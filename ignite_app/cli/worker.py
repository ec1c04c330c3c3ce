"""One training process: build the app, run it, log the outcome, map it to an exit code.

:func:`launch` runs :func:`worker` in every process of the layout the config asks for (one process, N spawned
ones, or torchrun's), through :func:`ignite_app.cli.launch.run_processes`.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Sequence

from ignite_app.cli.launch import run_processes, setup_process
from ignite_app.config import TrainConfig
from ignite_app.errors import DataError, Interrupted, TrainingDiverged, UsageError

log = logging.getLogger("ignite_app")


def launch(config: TrainConfig, prog: str = "train.py", argv: list[str] | None = None) -> int:
    """Run training in the process layout ``config`` asks for; returns the exit code of the run.

    Raises:
        UsageError: the layout is contradictory (torchrun without ``--backend``, say).
    """
    return run_processes(worker, (config, prog, argv), config.backend, config.nproc_per_node)


def resume_command(prog: str, argv: Sequence[str] | None, run_name: str, **replace: str) -> str:
    """The command that continues an interrupted run: the same options, plus ``--resume auto --run-name``.

    Args:
        replace: options to set in it, by field name (``on_bad_image="skip"``), replacing any given before.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    dropped = ("--resume", "--run-name", *(f"--{name.replace('_', '-')}" for name in replace))
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in dropped:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in dropped)):
            kept.append(arg)
    set_again = [v for name, value in replace.items() for v in (f"--{name.replace('_', '-')}", value)]
    command = ["python", f"scripts/{prog}"] if prog.endswith(".py") else prog.split()  # or "ignite-app train"
    return shlex.join([*command, *kept, *set_again, "--resume", "auto", "--run-name", run_name])


def worker(local_rank: int, config: TrainConfig, prog: str = "train.py", argv: list[str] | None = None) -> int:
    """Build and run the app in this process; log the outcome (into ``train.log`` too) and map it to an exit code.

    0: the run finished, or a handler stopped it (the command that continues it is printed); 1: the loss diverged,
    or an error was raised during training (the command that resumes is printed when a checkpoint exists); 2: the
    run cannot start as asked, or met an unreadable image under ``--on-bad-image error``; 128 + n: stopped by
    signal n.
    """
    from ignite_app.app import build  # late: spawned processes import the heavy modules themselves
    from ignite_app.plugins import culprit, import_plugins, load_plugins
    from ignite_app.runstate.checkpoint import training_checkpoints
    from ignite_app.runstate.signals import StopNow

    rank = setup_process()
    try:
        import_plugins(config.plugins)  # a spawned process starts with the built-in registry entries only
        app = build(config)
    except UsageError as e:
        if rank == 0:
            print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    run_name = app.paths.root.name
    try:
        result = app.run(close=False)  # closed below, once the outcome is in train.log
        if result.stopped_by_handler is not None and result.resumable:
            log.info("continue it with: %s", resume_command(prog, argv, run_name))
    except TrainingDiverged as e:
        log.error("training stopped: %s", e)
        return 1
    except (Interrupted, StopNow) as e:
        log.error("%s; continue it with: %s", e, resume_command(prog, argv, run_name))
        return e.exit_code
    except DataError as e:  # an unreadable image met under --on-bad-image error: the data, not the code
        log.error("%s: error: %s", prog, e)
        log.error("continue the run without it with: %s", resume_command(prog, argv, run_name, on_bad_image="skip"))
        if rank != 0:  # the console shows rank 0's log only; this process is the one that met the file
            print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        plugin = culprit(e, load_plugins(config.handlers))
        source = f"--handler {plugin.spec!r}{plugin.where(e)}" if plugin is not None else "an event handler"
        log.error("training stopped by an error in %s: %s: %s", source, type(e).__name__, e, exc_info=e)
        if training_checkpoints(app.paths.checkpoints):
            log.error("once it is fixed, continue the run from its last checkpoint with: %s",
                      resume_command(prog, argv, run_name))
        return 1
    finally:
        app.close()
    return 0
