"""Process layouts: one code path for one process, N spawned processes and ``torchrun``, via ``ignite.distributed``.

- no ``--backend``: a single process;
- ``--backend B --nproc-per-node N``: ``idist.Parallel`` spawns N processes on this machine;
- under ``torchrun`` (``WORLD_SIZE`` and ``LOCAL_RANK`` set): ``idist.Parallel`` joins the processes torchrun
  started (env:// rendezvous, any number of machines).

:func:`run_processes` runs a function in every process of the layout asked for and returns rank 0's exit code;
training runs :func:`ignite_app.cli.worker.worker` through it, evaluation its own worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import torch

from ignite_app.errors import UsageError

log = logging.getLogger("ignite_app")


def under_torchrun() -> bool:
    """Whether a launcher such as ``torchrun`` started this process as one rank of several."""
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def run_processes(fn: Callable[..., int], args: Sequence[Any], backend: str | None,
                  nproc_per_node: int | None) -> int:
    """Run ``fn(local_rank, *args)`` in every process of the layout asked for; returns rank 0's exit code.

    ``fn`` returns an exit code and must be defined at module level (spawned processes import it by name).

    Raises:
        UsageError: the layout is contradictory (torchrun without ``backend``, say).
    """
    if backend is None:
        if under_torchrun():
            raise UsageError(f"started as one of {os.environ['WORLD_SIZE']} processes (torchrun): pass --backend "
                             "gloo (CPU) or nccl (GPUs)")
        return fn(0, *args)
    if backend not in idist.available_backends():
        raise UsageError(f"--backend {backend} is not available in this torch build; available: "
                         f"{', '.join(idist.available_backends()) or 'none'}")
    if under_torchrun():
        if nproc_per_node is not None:
            raise UsageError("torchrun already started the processes: drop --nproc-per-node (use torchrun's "
                             "--nproc_per_node)")
        codes: list[int] = []
        parallel = idist.Parallel(backend=backend)
        _quiet_launcher()
        with parallel:
            parallel.run(_collect, fn, args, codes)
        return codes[0]
    return _spawn(fn, args, backend, nproc_per_node)


def _quiet_launcher() -> None:
    # ignite's launcher and auto_model print their settings at INFO level; the app logs what matters on rank 0.
    # ignite's setup_logger keeps the level of a logger that already exists, so creating them first is enough.
    for name in ("ignite.distributed.launcher.Parallel", "ignite.distributed.auto.auto_model"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _collect(local_rank: int, fn: Callable[..., int], args: Sequence[Any], codes: list[int]) -> None:
    codes.append(fn(local_rank, *args))


def _exit_with(local_rank: int, fn: Callable[..., int], args: Sequence[Any]) -> None:
    code = fn(local_rank, *args)
    if code:
        sys.exit(code)  # the parent reads it from the ProcessExitedException


def free_port() -> int:
    """A TCP port nobody listens on now, for a rendezvous on this machine (instead of ignite's fixed default:
    two runs on one machine must not collide)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn: Callable[..., int], args: Sequence[Any], backend: str, nproc_per_node: int | None) -> int:
    previous = _forward_stop_signals()
    try:
        parallel = idist.Parallel(backend=backend, nproc_per_node=nproc_per_node or 1,
                                  master_addr="127.0.0.1", master_port=free_port())
        _quiet_launcher()
        with parallel:
            parallel.run(_exit_with, fn, args)
    except torch.multiprocessing.ProcessExitedException as e:
        return e.exit_code if e.exit_code > 0 else 128 - e.exit_code  # killed by signal n: exit_code is -n
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


def _forward_stop_signals() -> dict[int, Any]:
    """In the launching process: pass SIGTERM on to the training processes and let them stop cleanly.

    SIGINT (Ctrl-C) reaches every process of the terminal's group by itself, so the launcher only ignores it.
    """
    import multiprocessing

    def forward(signum: int, frame: Any) -> None:
        for child in multiprocessing.active_children():
            os.kill(child.pid, signum)

    return {signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
            signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}


def setup_process() -> int:
    """Logging and threads of one process of a run: rank 0 logs to the console. Returns the rank."""
    from ignite_app.runstate.rundir import enable_console_logging

    _quiet_launcher()
    rank = idist.get_rank()
    if rank == 0:
        enable_console_logging()
    else:  # other ranks log to their own file only (attached by build), never to the console
        log.addHandler(logging.NullHandler())
    if idist.get_world_size() > 1 and not torch.cuda.is_available():
        # Several CPU processes on one machine: without this each one starts a thread per core and they fight.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // idist.get_nproc_per_node()))
    return rank
