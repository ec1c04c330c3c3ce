"""Exceptions the app raises on purpose; each message says what happened and what to do."""

import signal


class UsageError(ValueError):
    """The run cannot start as asked (an existing run folder, an unavailable device...); the CLI exits with 2."""


class DataError(UsageError):
    """The data cannot be used as it is (a missing folder, an unreadable image, a class without images...).

    Raised before anything is written; the message names the path and says how to fix it. The CLIs exit with 2.
    """


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the CLI exits with 1."""


class Interrupted(Exception):
    """The run stopped on a signal after saving a checkpoint; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int, iteration: int, run_name: str) -> None:
        self.signum, self.iteration, self.run_name = signum, iteration, run_name
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at iteration {iteration} after saving a "
                         "checkpoint")
