"""The trainer and evaluator engines: step functions only. Everything else is a handler (:mod:`ignite_app.handlers`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from torch import Tensor, nn


def prepare_batch(batch: tuple[Tensor, Tensor], device: torch.device,
                  non_blocking: bool = False) -> tuple[Tensor, Tensor]:
    """Move ``(images, labels)`` to ``device``; ``non_blocking`` overlaps the copy with compute from pinned memory."""
    x, y = batch
    return x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking)


def create_trainer(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[Tensor, Tensor], Tensor],
                   device: torch.device, non_blocking: bool = False) -> Engine:
    """An engine whose step trains on one batch and returns ``{"loss": detached loss, "batch_size": B}``.

    The loss stays a tensor: turning it into a float here would wait for the GPU on every iteration; the handlers
    that need a number convert it when they fire.
    """

    def train_step(engine: Engine, batch: tuple[Tensor, Tensor]) -> dict[str, Any]:
        model.train()
        x, y = prepare_batch(batch, device, non_blocking)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)  # (B, C)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach(), "batch_size": y.shape[0]}

    return Engine(train_step)


def create_evaluator(model: nn.Module, device: torch.device, metrics: Mapping[str, Metric],
                     non_blocking: bool = False) -> Engine:
    """An engine whose step returns ``(logits, labels)`` for its metrics, computed without gradients."""

    def eval_step(engine: Engine, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        model.eval()
        x, y = prepare_batch(batch, device, non_blocking)
        with torch.no_grad():
            return model(x), y  # (B, C), (B,)

    evaluator = Engine(eval_step)
    for name, metric in metrics.items():
        metric.attach(evaluator, name)
    return evaluator
