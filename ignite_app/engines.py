"""The trainer and evaluator engines: step functions only. Everything else is a handler (:mod:`ignite_app.handlers`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from torch import Tensor, nn

from ignite_app.recipe.accumulation import STEPPED, StepGroups
from ignite_app.recipe.mixing import BatchMixer


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


@dataclass(frozen=True)
class TrainRecipe:
    """What the training step does besides forward, loss, backward and step (all off by default).

    Args:
        groups: gradient accumulation: the batches of one optimizer step (:mod:`ignite_app.recipe.accumulation`).
        mixer: MixUp/CutMix of each batch, with soft targets (:mod:`ignite_app.recipe.mixing`).
        clip_grad_norm: clip the gradients' global L2 norm to this (after unscaling under float16 AMP).
    """

    groups: StepGroups = field(default_factory=StepGroups)
    mixer: BatchMixer | None = None
    clip_grad_norm: float | None = None


def create_trainer(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[Tensor, Tensor], Tensor],
                   options: StepOptions, scaler: torch.amp.GradScaler | None = None,
                   recipe: TrainRecipe | None = None) -> Engine:
    """An engine whose step trains on one batch and returns ``{"loss": detached loss, "batch_size": B, "stepped":
    whether the optimizer stepped}`` (plus ``"grad_norm"``, the norm before clipping, when it clips and stepped).

    The loss stays a tensor: turning it into a float here would wait for the GPU on every iteration; the handlers
    that need a number convert it when they fire. With a ``scaler`` (float16 AMP) the loss is scaled so that small
    gradients do not underflow. With gradient accumulation, the gradients are cleared before a group's first batch,
    each batch's loss is divided by the group's size, and the optimizer steps after its last batch; under
    ``DistributedDataParallel`` the other batches skip the gradient all-reduce (``no_sync``).
    """
    recipe = recipe or TrainRecipe()
    # a DistributedDataParallel wrapper, or one that holds it (fine-tuning rebuilds it at the unfreeze)
    no_sync = getattr(model, "no_sync", contextlib.nullcontext)

    def optimizer_step() -> Tensor | None:
        norm = None
        if recipe.clip_grad_norm is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            # the parameters that train now: a frozen backbone's join them at the unfreeze
            params = [p for p in model.parameters() if p.requires_grad]
            norm = torch.nn.utils.clip_grad_norm_(params, recipe.clip_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        return norm

    def train_step(engine: Engine, batch: tuple[Tensor, Tensor]) -> dict[str, Any]:
        model.train()
        x, y = prepare_batch(batch, options)
        group = recipe.groups.position(engine.state.iteration, engine.state.epoch_length)
        if group.first:
            optimizer.zero_grad(set_to_none=True)
        target = y
        if recipe.mixer is not None:
            x, target = recipe.mixer(x, y, engine.state.epoch, engine.state.iteration)  # floats, (B, C) targets
        with contextlib.nullcontext() if group.last else no_sync():
            with options.autocast():
                logits = model(x)  # (B, C)
                loss = loss_fn(logits, target)
            scaled = loss / group.size if group.size > 1 else loss
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        output: dict[str, Any] = {"loss": loss.detach(), "batch_size": y.shape[0], STEPPED: group.last}
        if group.last:
            norm = optimizer_step()
            if norm is not None:
                output["grad_norm"] = norm.detach()
        return output

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
