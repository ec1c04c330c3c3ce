"""Evaluate a saved model: rebuild it from its checkpoint and run the evaluator over a validation set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.metrics import Loss
from torch import nn
from torch.utils.data import DataLoader

from ignite_app.checkpoint import CheckpointError, load_checkpoint
from ignite_app.config import TrainConfig
from ignite_app.data import DataBundle, ShardSampler, build_data
from ignite_app.engines import StepOptions, create_evaluator
from ignite_app.metrics import REPORT, ClassificationReport, ConfusionMatrixMetric
from ignite_app.models import build_model

MODEL_KEYS = ("state_dict", "model")  # best_model.pt, training_<iteration>.pt


def model_from_checkpoint(checkpoint: dict[str, Any], path: Path) -> tuple[nn.Module, TrainConfig]:
    """The network a checkpoint was trained as, with its weights, and the config it was trained with."""
    config = TrainConfig.from_dict(checkpoint["config"])
    weights = next((checkpoint[k] for k in MODEL_KEYS if k in checkpoint), None)
    if weights is None or "classes" not in checkpoint or "input_shape" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} holds no model of this app (expected keys 'state_dict' or "
                              "'model', 'classes' and 'input_shape')")
    model = build_model(config.model, len(checkpoint["classes"]), tuple(checkpoint["input_shape"]))
    model.load_state_dict(weights)
    return model, config


def evaluate_checkpoint(path: Path, data: DataBundle | None = None, batch_size: int = 256,
                        device: torch.device | None = None) -> ClassificationReport:
    """The validation report of the model in checkpoint ``path``, exact over any number of processes.

    Args:
        path: ``best_model.pt`` or a training checkpoint.
        data: the data to evaluate on (its ``val`` split); default: the dataset the checkpoint was trained on.
        batch_size: samples per batch in each process.
        device: default: this process's device.
    """
    checkpoint = load_checkpoint(Path(path))
    model, config = model_from_checkpoint(checkpoint, Path(path))
    data = data if data is not None else build_data(config)
    if tuple(checkpoint["classes"]) != data.classes:
        raise CheckpointError(f"checkpoint {path} was trained on classes {list(checkpoint['classes'])}, the data "
                              f"has {list(data.classes)}; evaluate it on data with the same classes")
    device = device or idist.device()
    sampler = ShardSampler(len(data.val), idist.get_rank(), idist.get_world_size())  # no padding: exact counts
    loader = DataLoader(data.val, batch_size=batch_size, sampler=sampler,
                        collate_fn=getattr(data.val, "collate_fn", None))
    metrics = {REPORT: ConfusionMatrixMetric(data.classes, device=device), "loss": Loss(nn.CrossEntropyLoss())}
    evaluator = create_evaluator(model.to(device), StepOptions(device), metrics)
    evaluator.run(loader)
    return evaluator.state.metrics[REPORT]
