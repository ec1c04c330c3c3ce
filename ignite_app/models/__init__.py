"""Networks and optimizers, built by name through the registries (:mod:`ignite_app.registry`).

A model entry is either a plain function ``fn(num_classes, input_shape) -> nn.Module``, a :class:`ModelSpec`
that also says where the classifier head is and what input the network expects, or a zoo network
(``torchvision:NAME``, ``timm:NAME``: :mod:`ignite_app.models.zoo`). Every network is trained, saved and evaluated
inside a :class:`~ignite_app.models.preprocess.Classifier`, behind the preprocessing that turns raw pixels into its
normalised input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ignite_app.config import TrainConfig
from ignite_app.models.preprocess import Classifier, Preprocess
from ignite_app.models.zoo_info import PretrainedConfig, ZooInfo, registered_info
from ignite_app.registry import MODELS, OPTIMIZERS

__all__ = ["Classifier", "ModelSpec", "Preprocess", "build_classifier", "build_network", "build_network_info",
           "build_optimizer", "model_spec", "network_static_info", "param_groups"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered network and what the app may need to know about it.

    Args:
        build: ``fn(num_classes, input_shape) -> nn.Module``; input_shape is (C, H, W).
        head: dotted name of the classifier head module (fine-tuning freezes everything else); default: the last
            ``nn.Linear`` or ``nn.Conv2d`` with ``num_classes`` outputs.
        input_size: the side length the network was designed for (the default ``--image-size`` with
            ``--normalization pretrained``).
        min_input_size: the smallest side length it accepts.
        mean: per-channel normalisation the network expects (pretrained networks, ``--normalization pretrained``);
            None: the dataset's.
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

    def pretrained_config(self, name: str) -> PretrainedConfig | None:
        """The input it expects as a :class:`PretrainedConfig` (None without mean and std)."""
        if self.mean is None or self.std is None:
            return None
        size = self.input_size or 0
        return PretrainedConfig(weights=name, mean=tuple(self.mean), std=tuple(self.std), input_size=(size, size),
                                resize_size=size, crop_pct=1.0, interpolation="bilinear")


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered network (a plain function becomes ``ModelSpec(fn)``)."""
    entry = MODELS.get(name)
    if isinstance(entry, ModelSpec):
        return entry
    if not callable(entry):
        raise TypeError(f"model {name!r} is registered as a {type(entry).__name__}; register a function "
                        "fn(num_classes, input_shape) -> nn.Module or a ModelSpec")
    return ModelSpec(entry)


def _zoo_entry(name: str) -> Any:
    """The :class:`~ignite_app.models.zoo.ZooModel` of a zoo name, or None for a registered name."""
    if ":" not in name:
        return None
    from ignite_app.models.zoo import ZooModel

    entry = MODELS.get(name)
    return entry if isinstance(entry, ZooModel) else None


def build_network(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """The network ``name`` for ``num_classes`` classes and inputs of ``input_shape`` (C, H, W)."""
    return build_network_info(name, num_classes, input_shape)[0]


def build_network_info(name: str, num_classes: int, input_shape: tuple[int, int, int], pretrained: bool = False,
                       drop_path: float | None = None) -> tuple[nn.Module, ZooInfo]:
    """The network ``name`` and its :class:`ZooInfo` (head, accepted sizes, pretrained configuration).

    Args:
        input_shape: (C, H, W) the network receives (after the preprocessing's channel repeat and resize).
        pretrained: (zoo networks) load the default pretrained weights.
        drop_path: (zoo networks) the stochastic-depth rate.
    """
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    zoo = _zoo_entry(name)
    if zoo is not None:
        return zoo.create(num_classes, input_shape[0], pretrained, drop_path)
    spec = model_spec(name)
    network = spec.build(num_classes, tuple(input_shape))  # type: ignore[arg-type]
    if not isinstance(network, nn.Module):
        raise TypeError(f"model {name!r} returned a {type(network).__name__}, not a torch.nn.Module")
    return network, python_network_info(name, network, num_classes, input_shape[0], spec)


def python_network_info(name: str, network: nn.Module, num_classes: int, in_chans: int,
                        spec: ModelSpec | None = None) -> ZooInfo:
    """The :class:`ZooInfo` of a registered network or one given from Python; without a head it can find, the
    head is empty (the whole network is the "backbone": fine without ``--freeze-epochs`` and
    ``--backbone-lr-scale``)."""
    spec = spec or ModelSpec(lambda *_: network)
    minimum = (spec.min_input_size, spec.min_input_size) if spec.min_input_size else None
    try:
        return registered_info(name, network, num_classes, in_chans, spec.head, spec.pretrained_config(name),
                               minimum)
    except ValueError:
        if spec.head is not None:
            raise
        return ZooInfo(name=name, source="registered", num_classes=num_classes, in_chans=in_chans, head=(),
                       config=spec.pretrained_config(name), channels="native", min_size=minimum)


def network_static_info(name: str, num_classes: int, in_chans: int, drop_path: float | None = None) -> ZooInfo:
    """What :func:`build_network_info` will report, without building the network (the head left empty): the input
    size, mean and std it expects and how image channels are fed to it."""
    zoo = _zoo_entry(name)
    if zoo is not None:
        return zoo.static_info(num_classes, in_chans, drop_path)
    spec = model_spec(name)
    minimum = (spec.min_input_size, spec.min_input_size) if spec.min_input_size else None
    return ZooInfo(name=name, source="registered", num_classes=num_classes, in_chans=in_chans, head=(),
                   config=spec.pretrained_config(name), channels="native", min_size=minimum)


def build_classifier(name: str, num_classes: int, input_shape: tuple[int, int, int],
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                     network: nn.Module | None = None, *, preprocess: Preprocess | None = None,
                     pretrained: bool = False, drop_path: float | None = None) -> Classifier:
    """The network behind its preprocessing: raw pixels of ``input_shape`` in, logits (B, num_classes) out.

    Args:
        mean: the preprocessing's per-channel mean (ignored with ``preprocess``).
        std: idem, standard deviation.
        network: a network built already (``build(config, model=...)``); default: built from the registry.
        preprocess: the preprocessing (a channel repeat and a resize included); default: ``Preprocess(mean, std)``.
        pretrained: (zoo networks) start from the default pretrained weights.
        drop_path: (zoo networks) the stochastic-depth rate.
    """
    if preprocess is None:
        if mean is None or std is None:
            raise TypeError("build_classifier needs mean and std, or a Preprocess")
        preprocess = Preprocess(mean, std)
    shape = preprocess.output_shape(input_shape)
    if network is None:
        network, info = build_network_info(name, num_classes, shape, pretrained, drop_path)
    else:
        info = python_network_info(name, network, num_classes, shape[0])
    return Classifier(preprocess, network, info.head)


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: head and backbone, each with and without weight decay.

    Biases, normalisation weights (every 1-d parameter) and what a timm network lists in ``no_weight_decay()`` get
    no weight decay; the backbone's learning rate is ``--backbone-lr-scale`` times the head's (``--lr``). The four
    groups are always there, in the order of :data:`ignite_app.models.finetune.GROUP_NAMES` (the head's first),
    whether or not the backbone is frozen, so the optimizer's state has the same structure throughout a run.
    """
    from ignite_app.models.finetune import param_groups as split

    network, head = (model.network, model.head) if isinstance(model, Classifier) else (model, ())
    return split(network, head, config.lr, config.weight_decay, config.backbone_lr_scale)


def build_optimizer(name: str, groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    """The registered optimizer ``name`` over ``groups`` (each with its own ``lr`` and ``weight_decay``)."""
    optimizer = OPTIMIZERS.get(name)(groups, config)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer {name!r} returned a {type(optimizer).__name__}, not a torch.optim.Optimizer")
    return optimizer
