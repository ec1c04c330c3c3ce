"""The run's durable state: what makes a run impossible to lose.

- :mod:`~ignite_app.runstate.fileio`: atomic, fsynced file writes;
- :mod:`~ignite_app.runstate.rundir`: the run folder's layout, its lock, its log files, what an existing folder holds;
- :mod:`~ignite_app.runstate.checkpoint`: writing checkpoints durably (on a background thread), loading them safely;
- :mod:`~ignite_app.runstate.resume`: finding, checking and restoring a checkpoint;
- :mod:`~ignite_app.runstate.fingerprint`: the data's fingerprint, so that changed data is never resumed;
- :mod:`~ignite_app.runstate.signals`: stopping cleanly on SIGTERM/SIGINT or a handler's ``terminate()``.
"""
