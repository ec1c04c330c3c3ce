"""One background thread for work that must not hold up the training loop: writing checkpoints, drawing and
writing the reports. Jobs run in the order they were submitted; a failure is raised in the training loop's thread."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class JobError(RuntimeError):
    """A background job (writing a checkpoint, drawing or writing a report) failed; the cause is chained."""


class BackgroundJobs:
    """Run jobs on one worker thread, in the order they were submitted; a failure is raised in the caller's thread.

    ``concurrent.futures`` keeps a job's exception in its future; this class looks at the futures at every
    :meth:`submit` and :meth:`wait`, so a failed job stops the run at the next validation instead of vanishing.

    Args:
        synchronous: run each job at once in the caller's thread (for measurements and debugging).
        name: the thread's name (``ignite_app-<name>``), for debuggers and profilers.
    """

    def __init__(self, synchronous: bool = False, name: str = "reports") -> None:
        self._executor = None if synchronous else ThreadPoolExecutor(1, thread_name_prefix=f"ignite_app-{name}")
        self._pending: deque[tuple[str, Future[None]]] = deque()

    def submit(self, what: str, job: Callable[..., None], *args: Any) -> None:
        """Run ``job(*args)`` in the background; ``what`` names it in the error message if it fails."""
        self.check()
        if self._executor is None:
            try:
                job(*args)
            except Exception as e:
                raise JobError(f"{what} failed: {type(e).__name__}: {e}") from e
        else:
            self._pending.append((what, self._executor.submit(job, *args)))

    def check(self) -> None:
        """Forget the jobs that finished; raise :class:`JobError` for the first that failed."""
        while self._pending and self._pending[0][1].done():
            _raise_failure(*self._pending.popleft())

    def wait(self) -> None:
        """Wait for every submitted job; raise :class:`JobError` for the first that failed."""
        while self._pending:
            _raise_failure(*self._pending.popleft())

    def close(self) -> None:
        """:meth:`wait`, then stop the worker thread (idempotent)."""
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None


def _raise_failure(what: str, future: Future[None]) -> None:
    error = future.exception()  # waits for the job
    if error is not None:
        raise JobError(f"{what} failed: {type(error).__name__}: {error}") from error
