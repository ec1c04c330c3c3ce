"""Way 1 of extending the app, from Python: build it, attach handlers to its engines, run it.

    python examples/python_api.py [train.py options...]

It prints the worst class every 2 epochs, and announces each new best model (an app event).
"""

import sys
from pathlib import Path

from ignite.engine import Engine, Events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ignite_app import AppEvents, build  # noqa: E402
from ignite_app.cli.train import parse_config  # noqa: E402
from ignite_app.runstate.rundir import enable_console_logging  # noqa: E402


def main(argv: list[str]) -> int:
    enable_console_logging()
    app = build(parse_config(argv))

    @app.trainer.on(Events.EPOCH_COMPLETED(every=2))
    def worst_class(trainer: Engine) -> None:
        per_class = app.evaluator.state.metrics["report"].per_class
        name = per_class["f1"].idxmin()
        print(f"epoch {trainer.state.epoch}: worst class {name!r} (f1 {per_class.loc[name, 'f1']:.3f})")

    @app.trainer.on(AppEvents.BEST_MODEL_SAVED)
    def new_best(trainer: Engine) -> None:
        best = trainer.state.best_model
        print(f"new best model at epoch {best.epoch}: {best.accuracy:.2%} -> {best.path}")

    result = app.run()
    print(f"done: best accuracy {result.best_accuracy:.2%} at epoch {result.best_epoch}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
