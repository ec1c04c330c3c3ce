"""The trainer and evaluator engines: step functions only. Everything else is a handler (:mod:`ignite_app.handlers`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from torch import Tensor, nn


@dataclass(frozen=True)
class StepOptions:
    """How a step moves data and computes: the same for training and evaluation."""

    device: torch.device
    non_blocking: bool = False  # overlap host-to-GPU copies with compute (needs pinned memory)
    amp: bool = False  # autocast: float16 on CUDA, bfloat16 on CPU
    channels_last: bool = False

    @property
    def amp_dtype(self) -> torch.dtype:
        return torch.float16 if self.device.type == "cuda" else torch.bfloat16

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)


def prepare_batch(batch: tuple[Tensor, Tensor], options: StepOptions) -> tuple[Tensor, Tensor]:
    """Move ``(images, labels)`` to the device, in the memory layout the options ask for."""
    x, y = batch
    x = x.to(options.device, non_blocking=options.non_blocking)
    if options.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(options.device, non_blocking=options.non_blocking)


def create_trainer(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[Tensor, Tensor], Tensor],
                   options: StepOptions, scaler: torch.amp.GradScaler | None = None) -> Engine:
    """An engine whose step trains on one batch and returns ``{"loss": detached loss, "batch_size": B}``.

    The loss stays a tensor: turning it into a float here would wait for the GPU on every iteration; the handlers
    that need a number convert it when they fire. With a ``scaler`` (float16 AMP) the loss is scaled so that small
    gradients do not underflow.
    """

    def train_step(engine: Engine, batch: tuple[Tensor, Tensor]) -> dict[str, Any]:
        model.train()
        x, y = prepare_batch(batch, options)
        optimizer.zero_grad(set_to_none=True)
        with options.autocast():
            logits = model(x)  # (B, C)
            loss = loss_fn(logits, y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return {"loss": loss.detach(), "batch_size": y.shape[0]}

    return Engine(train_step)


class EvalOutput(tuple):
    """What the evaluator's step returns: the pair ``(logits, y)`` that ignite's metrics and users' handlers unpack,
    with the batch's probabilities (computed once, shared by every metric that needs them) and raw images beside it.

    Attributes:
        logits: (B, C) float32.
        y: (B,) int64 targets, on the device.
        probs: (B, C) float32, ``logits.softmax(dim=1)``.
        images: the batch's images as the loader gave them (raw pixels, not moved to the device).
    """

    probs: Tensor
    images: Tensor

    def __new__(cls, logits: Tensor, y: Tensor, probs: Tensor, images: Tensor) -> EvalOutput:
        output = super().__new__(cls, (logits, y))
        output.probs, output.images = probs, images
        return output

    @property
    def logits(self) -> Tensor:
        return self[0]

    @property
    def y(self) -> Tensor:
        return self[1]


def create_evaluator(model: nn.Module, options: StepOptions, metrics: Mapping[str, Metric]) -> Engine:
    """An engine whose step returns an :class:`EvalOutput`, ``(logits, labels)`` plus the probabilities,
    computed without gradients."""

    def eval_step(engine: Engine, batch: tuple[Tensor, Tensor]) -> EvalOutput:
        model.eval()
        x, y = prepare_batch(batch, options)
        with torch.no_grad(), options.autocast():
            logits = model(x)
        logits = logits.float()  # (B, C) in float32, so that the loss metric is computed at full precision
        return EvalOutput(logits, y, logits.softmax(dim=1), batch[0])

    evaluator = Engine(eval_step)
    for name, metric in metrics.items():
        metric.attach(evaluator, name)
    return evaluator
