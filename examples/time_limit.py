"""A time limit: stop cleanly at the end of the first epoch that finishes after the limit, as a plugin:

    python scripts/train.py --handler examples/time_limit.py:attach

or run directly: ``python examples/time_limit.py [--seconds S] [train.py options...]``. The check runs after the
epoch's training checkpoint has been written, so the run can be continued later with ``--resume auto``.
"""

import argparse
import sys
from pathlib import Path

from ignite.engine import Events
from ignite.handlers import TimeLimit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

SECONDS = 3600


def attach(app, seconds: int = SECONDS) -> TimeLimit:
    """ignite's ``TimeLimit``, checked at the end of each epoch rather than after every iteration."""
    handler = TimeLimit(limit_sec=seconds)
    app.trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)  # attached after the app's epoch checkpoint
    return handler


if __name__ == "__main__":
    from ignite_app import build
    from ignite_app.cli.train import parse_config
    from ignite_app.runstate.rundir import enable_console_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=SECONDS)
    args, train_args = parser.parse_known_args()
    enable_console_logging()
    app = build(parse_config(train_args))
    attach(app, seconds=args.seconds)
    result = app.run()
    print(f"stopped after epoch {result.epochs}")
