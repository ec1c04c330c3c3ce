"""Early stopping on macro F1 instead of accuracy, as a command-line plugin:

    python scripts/train.py --handler examples/early_stopping_f1.py:attach

or run directly: ``python examples/early_stopping_f1.py [--patience N] [train.py options...]``.
Macro F1 weighs every class alike, so it notices a rare class getting worse when accuracy does not.
"""

import argparse
import sys
from pathlib import Path

from ignite.engine import Events
from ignite.handlers import EarlyStopping

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

PATIENCE = 5


def attach(app, patience: int = PATIENCE) -> EarlyStopping:
    """Stop training after ``patience`` validations without a better macro F1 (ignite's EarlyStopping)."""
    handler = EarlyStopping(patience, score_function=lambda evaluator: evaluator.state.metrics["f1_macro"],
                            trainer=app.trainer)
    app.evaluator.add_event_handler(Events.COMPLETED, handler)
    return handler


if __name__ == "__main__":
    from ignite_app import build
    from ignite_app.cli.train import parse_config
    from ignite_app.runstate.rundir import enable_console_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patience", type=int, default=PATIENCE)
    args, train_args = parser.parse_known_args()
    enable_console_logging()
    app = build(parse_config(train_args))
    attach(app, patience=args.patience)
    result = app.run()
    print(f"stopped after epoch {result.epochs}")
