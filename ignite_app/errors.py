"""Exceptions the app raises on purpose; each message says what happened and what to do."""


class UsageError(ValueError):
    """The run cannot start as asked (an existing run folder, an unavailable device...); the CLI exits with 2."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the CLI exits with 1."""
