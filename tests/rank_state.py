"""Test helper, a --handler plugin: when training completes, each rank saves what it holds into
``$RANK_STATE_DIR/rank<k>.pt`` (its weights, its EMA, and the metrics its evaluators computed), so that a test can
check that every rank of a distributed run agrees."""

import os
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Events


def attach(app):
    @app.trainer.on(Events.COMPLETED)
    def save(trainer):
        raw = app.handlers.raw_evaluator
        torch.save({"model": app.model.module.state_dict() if hasattr(app.model, "module") else app.model.state_dict(),
                    "ema": app.handlers.ema.state_dict() if app.handlers.ema is not None else None,
                    "val": {k: v for k, v in app.evaluator.state.metrics.items() if isinstance(v, float)},
                    "val_raw": dict(raw.state.metrics) if raw is not None else None},
                   Path(os.environ["RANK_STATE_DIR"]) / f"rank{idist.get_rank()}.pt")
