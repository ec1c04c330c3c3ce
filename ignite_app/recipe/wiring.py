"""What :func:`ignite_app.app.build` makes and attaches for the training recipe: the step's recipe, the training
loss, the EMA and its updates, the validation of the raw weights next to the EMA's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.metrics import Accuracy
from torch import nn
from torch.utils.data import DataLoader

from ignite_app.config import TrainConfig
from ignite_app.data.spec import DataBundle, dataset_labels
from ignite_app.engines import StepOptions, TrainRecipe, create_evaluator
from ignite_app.metrics import ACCURACY, VAL_LOSS, ValidationLoss
from ignite_app.recipe.accumulation import STEPPED, StepGroups
from ignite_app.recipe.ema import ModelEma
from ignite_app.recipe.losses import TrainingLoss, balanced_class_weights
from ignite_app.recipe.mixing import BatchMixer

VAL_RAW_TAG = "val_raw"  # TensorBoard: val_raw/accuracy and val_raw/loss, the raw weights' validation under EMA


def build_train_recipe(config: TrainConfig, num_classes: int, rank: int) -> TrainRecipe:
    """The training step's accumulation, mixing and clipping, as ``config`` asks."""
    mixer = BatchMixer(num_classes, config.mixup_alpha, config.cutmix_alpha, config.mix_prob,
                       config.label_smoothing, config.seed, rank) if config.mixes else None
    return TrainRecipe(StepGroups(config.accumulate_steps), mixer, config.clip_grad_norm)


def build_training_loss(config: TrainConfig, data: DataBundle, device: torch.device) -> TrainingLoss:
    """Cross-entropy with ``--label-smoothing`` and ``--class-weights``: the training loss only."""
    weight = None
    if config.class_weights == "balanced":
        weight = balanced_class_weights(dataset_labels(data.train), len(data.classes)).to(device)
    return TrainingLoss(config.label_smoothing, weight)


def create_ema(model: nn.Module, config: TrainConfig) -> ModelEma | None:
    """The moving average of ``model`` (the bare model) with ``--ema-decay``, or ``None``."""
    return ModelEma(model, config.ema_decay, config.ema_warmup_steps) if config.ema_decay is not None else None


def attach_ema(trainer: Engine, ema: ModelEma, model: nn.Module) -> Callable[[Engine], None]:
    """Update ``ema`` after every optimizer step; attach before the training checkpoint, which saves it."""

    def update(engine: Engine) -> None:
        if engine.state.output[STEPPED]:
            ema.update(model)

    trainer.add_event_handler(Events.ITERATION_COMPLETED, update)
    return update


def create_raw_evaluator(model: nn.Module, options: StepOptions) -> Engine:
    """An evaluator of the raw (not averaged) weights: accuracy and plain cross-entropy, exact across processes."""
    return create_evaluator(model, options, {ACCURACY: Accuracy(device=options.device),
                                             VAL_LOSS: ValidationLoss(nn.CrossEntropyLoss(), device=options.device)})


def attach_raw_validation(trainer: Engine, raw_evaluator: Engine, val_loader: DataLoader) -> Callable[[Engine], None]:
    """After each epoch's validation (of the EMA weights), validate the raw weights too; their accuracy and loss go
    to ``trainer.state.val_raw_metrics``. Attach right after :func:`~ignite_app.handlers.attach_validation`."""

    def validate_raw(engine: Engine) -> None:
        raw_evaluator.run(val_loader)
        engine.state.val_raw_metrics = dict(raw_evaluator.state.metrics)

    trainer.add_event_handler(Events.EPOCH_COMPLETED, validate_raw)
    return validate_raw


def recipe_state(ema: ModelEma | None) -> dict[str, Any]:
    """The training checkpoint's entries for the recipe's own state."""
    return {"ema": ema} if ema is not None else {}
