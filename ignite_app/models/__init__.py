"""Networks and optimizers, built by name through the registries (:mod:`ignite_app.registry`).

A model entry is either a plain function ``fn(num_classes, input_shape) -> nn.Module`` or a :class:`ModelSpec`
that also says where the classifier head is and what input the network expects (the zoo networks use it). Every
network is trained, saved and evaluated inside a :class:`~ignite_app.models.preprocess.Classifier`, behind the
preprocessing that turns raw pixels into its normalised input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ignite_app.config import TrainConfig
from ignite_app.models.preprocess import Classifier, Preprocess
from ignite_app.registry import MODELS, OPTIMIZERS

__all__ = ["Classifier", "ModelSpec", "Preprocess", "build_classifier", "build_network", "build_optimizer",
           "model_spec", "param_groups"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered network and what the app may need to know about it.

    Args:
        build: ``fn(num_classes, input_shape) -> nn.Module``; input_shape is (C, H, W).
        head: dotted name of the classifier head module (fine-tuning freezes everything else).
        input_size: the side length the network was designed for (the default ``--image-size``).
        min_input_size: the smallest side length it accepts.
        mean: per-channel normalisation the network expects (pretrained networks); None: the dataset's.
        std: idem.
        crop_fraction: the centre crop's share of the resized image in the network's evaluation recipe (timm's
            ``crop_pct``); None: ``--crop-fraction``'s default, 0.875.
    """

    build: Callable[[int, tuple[int, int, int]], nn.Module]
    head: str | None = None
    input_size: int | None = None
    min_input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_fraction: float | None = None


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered network (a plain function becomes ``ModelSpec(fn)``)."""
    entry = MODELS.get(name)
    if isinstance(entry, ModelSpec):
        return entry
    if not callable(entry):
        raise TypeError(f"model {name!r} is registered as a {type(entry).__name__}; register a function "
                        "fn(num_classes, input_shape) -> nn.Module or a ModelSpec")
    return ModelSpec(entry)


def build_network(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """The network ``name`` for ``num_classes`` classes and inputs of ``input_shape`` (C, H, W)."""
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    network = model_spec(name).build(num_classes, tuple(input_shape))  # type: ignore[arg-type]
    if not isinstance(network, nn.Module):
        raise TypeError(f"model {name!r} returned a {type(network).__name__}, not a torch.nn.Module")
    return network


def build_classifier(name: str, num_classes: int, input_shape: tuple[int, int, int], mean: Sequence[float],
                     std: Sequence[float], network: nn.Module | None = None) -> Classifier:
    """The network behind its preprocessing: raw pixels in, logits (B, num_classes) out.

    Args:
        network: a network built already (``build(config, model=...)``); default: built from the registry.
    """
    return Classifier(Preprocess(mean, std), network if network is not None else
                      build_network(name, num_classes, input_shape))


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: one group with ``--lr`` and ``--weight-decay``."""
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr,
             "weight_decay": config.weight_decay}]


def build_optimizer(name: str, groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    """The registered optimizer ``name`` over ``groups`` (each with its own ``lr`` and ``weight_decay``)."""
    optimizer = OPTIMIZERS.get(name)(groups, config)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer {name!r} returned a {type(optimizer).__name__}, not a torch.optim.Optimizer")
    return optimizer
