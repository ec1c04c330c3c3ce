"""Transfer learning in a run: the input a pretrained network expects, its weights, a frozen backbone.

:func:`ignite_app.app.build` calls, in order:

1. :func:`resolve_input_options` first of all: ``--image-size`` and the file crop and
   interpolation, from the network's pretrained configuration (read from the zoo's tables, nothing built). The
   resolved values are part of the run's config, so a resume, ``evaluate.py`` and ``predict.py`` see them.
2. :func:`build_model` once the data is known: the preprocessing (mean and std, a channel repeat for grayscale
   images and a 3-channel network, a resize of fixed-size images on the device), the network (``--pretrained``
   from the zoo's cache) and ``--weights``; a resumed run rebuilds the architecture only, the checkpoint brings the
   weights. The backbone starts frozen when the run (or the resumed checkpoint) is in a ``--freeze-epochs`` epoch.
3. :func:`wrap_model`: ``DistributedDataParallel`` via ``idist.auto_model``, or, when the backbone will be unfrozen
   during a run of several processes, a :class:`RebuildableDDP`.
4. :func:`attach_backbone_unfreeze`: at the first epoch after ``--freeze-epochs``, the backbone trains again and the
   wrapper is rebuilt.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import ignite.distributed as idist
from ignite.engine import Engine, Events
from torch import nn

from ignite_app.config import TrainConfig, default_image_size
from ignite_app.data.spec import DataBundle
from ignite_app.errors import UsageError
from ignite_app.handlers import EpochSummary
from ignite_app.models import Classifier, Preprocess, build_network_info, network_static_info, python_network_info
from ignite_app.models.zoo_info import ZooInfo

log = logging.getLogger("ignite_app")


def resolve_input_options(config: TrainConfig) -> TrainConfig:
    """``config`` with ``--image-size``, ``--crop-fraction`` (image folders) and ``interpolation`` filled in (``--normalization`` is left
    as given: its default follows from the other options, :attr:`TrainConfig.uses_pretrained_input`).

    With ``--normalization pretrained`` (the default with ``--pretrained``, or with ``--weights`` of a zoo
    network), the network's pretrained configuration gives the default image size, the crop and the interpolation;
    with ``--pretrained`` and ``--normalization dataset``, the default image size only.
    An image size the network cannot take, and ``--pretrained`` weights that are neither cached nor downloadable,
    are refused here, before the data is read (the file, once fetched, waits in the zoo's cache).

    Raises:
        UsageError: pretrained normalisation for a network without a pretrained configuration, a size the network
            does not accept (naming ``--image-size`` and the sizes it accepts), or pretrained weights that cannot
            be had.
    """
    pretrained = config.uses_pretrained_input
    info = None if config.python_model else network_static_info(config.model, 2, 3, config.drop_path)
    if pretrained and (info is None or info.config is None):
        what = "a network given from Python" if info is None else f"--model {config.model}"
        raise UsageError(f"--normalization pretrained: {what} has no pretrained configuration (mean, std, input "
                         "size); use --normalization dataset, or register it as a ModelSpec with mean and std")
    # 0: a registered ModelSpec with mean and std but no input_size, whose size is the dataset's
    native = (info.config.input_size[0] or None) if info is not None and info.config is not None else None
    image_size = default_image_size(config, native)
    if image_size is not None and info is not None:
        check_size(info, image_size)
    if config.pretrained and config.resume is None:  # a refusal (offline, no cached copy) before the data is read
        from ignite_app.models.zoo import fetch_pretrained

        fetch_pretrained(config.model)
    pcfg = info.config if pretrained and info is not None else None
    # image files take the configuration's centre crop (--crop-fraction, when not given); the pipeline resizes them
    # bilinear (antialiased) whatever its interpolation, which applies to the in-memory datasets' resize
    crop = config.crop_fraction
    if pcfg is not None and crop is None and config.dataset == "folder":
        crop = pcfg.crop_pct
    return dataclasses.replace(config, image_size=image_size, crop_fraction=crop,
                               interpolation=pcfg.interpolation if pcfg is not None else config.interpolation)


def check_size(info: ZooInfo, size: int | tuple[int, int]) -> None:
    """Refuse a network input size ``info``'s network does not accept (see ``zoo.check_input_size``)."""
    from ignite_app.models.zoo import check_input_size

    check_input_size(info, size)


@dataclass(frozen=True)
class BuiltModel:
    """The classifier :func:`build_model` made and what the log says about it."""

    classifier: Classifier
    info: ZooInfo
    notes: tuple[str, ...]  # lines for the start of the log (rank 0)


def build_model(config: TrainConfig, data: DataBundle, epoch_length: int, network: nn.Module | None = None,
                resumed_at: int | None = None) -> BuiltModel:
    """The classifier of a run: preprocessing, network, starting weights, and the backbone frozen if it must be.

    Args:
        config: the run's config, resolved by :func:`resolve_input_options`.
        data: the run's data (classes, raw input shape, training-set mean and std).
        epoch_length: iterations per epoch, to place a resumed checkpoint in its epoch.
        network: a network given from Python (``build(config, model=...)``); default: ``config.model``.
        resumed_at: the iteration of the checkpoint a resumed run continues from: the weights come from it, so
            neither ``--pretrained`` nor ``--weights`` is read.

    Raises:
        UsageError: an input size or channel count the network does not take, pretrained weights that cannot be
            had, a ``--weights`` file that does not fit, or fine-tuning options for a network without a known head.
    """
    classes = len(data.classes)
    static = network_static_info(config.model, classes, data.input_shape[0], config.drop_path) \
        if network is None else None
    preprocess = build_preprocess(config, data, static)
    shape = preprocess.output_shape(data.input_shape)
    if static is not None and config.image_size is None:  # the dataset's own size: known only now
        check_size(static, shape[1:])
    if network is None:
        network, info = build_network_info(config.model, classes, shape, config.pretrained and resumed_at is None,
                                           config.drop_path)
    else:
        info = python_network_info("the network given from Python", network, classes, shape[0])
    notes = []
    if info.source != "registered":
        weights = "the weights of the resumed checkpoint" if resumed_at is not None else \
            f"--weights {config.weights}" if config.weights is not None else None
        notes.append(f"model: {info.describe(weights)}")
    if config.uses_pretrained_input or preprocess.repeat is not None or preprocess.size is not None:
        notes.append(f"input: {describe_input(preprocess, data, config)}")
    if info.load_summary and resumed_at is None:
        notes.append(f"pretrained weights: {info.load_summary}")
    if config.weights is not None and resumed_at is None:
        from ignite_app.models.weights import load_weights

        notes.append(f"--weights: {load_weights(network, config.weights, info, classes=data.classes).summary()}")
    classifier = Classifier(preprocess, network, info.head)
    if (config.freeze_epochs or config.backbone_lr_scale != 1) and not info.head:
        raise UsageError(f"--freeze-epochs and --backbone-lr-scale need the classifier head of {info.name}, which "
                         "the app cannot find (no Linear or Conv2d layer with one output per class); register the "
                         "network as a ModelSpec(build, head='module.name')")
    next_epoch = (resumed_at or 0) // epoch_length + 1
    if next_epoch <= config.freeze_epochs:
        classifier.set_backbone_frozen(True)
    if config.freeze_epochs:
        frozen = "epoch 1" if config.freeze_epochs == 1 else f"epochs 1-{config.freeze_epochs}"
        notes.append(f"fine-tuning: the backbone is frozen for {frozen} (only "
                     f"{', '.join(info.head)} train{'s' if len(info.head) == 1 else ''}), then the whole network "
                     f"trains, the backbone at {config.backbone_lr_scale:g} x --lr")
    elif config.backbone_lr_scale != 1:
        notes.append(f"fine-tuning: the backbone trains at {config.backbone_lr_scale:g} x --lr")
    return BuiltModel(classifier, info, tuple(notes))


def build_preprocess(config: TrainConfig, data: DataBundle, info: ZooInfo | None) -> Preprocess:
    """Raw pixels to the network's input: channel repeat, the normalisation ``config`` asks for, resize.

    The mean and std are the pretrained configuration's with ``--normalization pretrained``, else the training
    set's (repeated for a repeated channel). Images that are not ``--image-size`` already (fixed-size datasets
    such as the digits) are resized on the device with the configuration's interpolation.
    """
    repeat = info.repeat_channels if info is not None and data.input_shape[0] == 1 else None
    if config.uses_pretrained_input:
        mean, std = info.config.mean, info.config.std  # type: ignore[union-attr]  # resolve_input_options checked
    else:
        mean, std = (tuple(data.mean) * repeat, tuple(data.std) * repeat) if repeat else (data.mean, data.std)
    channels = repeat or data.input_shape[0]
    if len(mean) != channels:
        raise UsageError(f"--normalization pretrained: {config.model}'s mean and std have {len(mean)} channels, the "
                         f"images {data.input_shape[0]}; use --normalization dataset")
    size = config.image_size
    resize = size if size is not None and tuple(data.input_shape[1:]) != (size, size) else None
    return Preprocess(mean, std, repeat, resize, config.interpolation)  # type: ignore[arg-type]


def describe_input(preprocess: Preprocess, data: DataBundle, config: TrainConfig) -> str:
    """One line for the log: what the preprocessing does to the raw images."""
    raw = "x".join(map(str, data.input_shape))
    steps = [f"raw {raw} images"]
    if preprocess.repeat is not None:
        steps.append(f"repeated to {preprocess.repeat.channels} channels")
    source = "the network's pretrained configuration" if config.uses_pretrained_input else "the training set"
    steps.append(f"normalised with the mean and std of {source}")
    if preprocess.size is not None:
        steps.append(f"resized to {preprocess.size}x{preprocess.size} on the device ({preprocess.interpolation})")
    elif data.crop_fraction is not None:  # image files
        from ignite_app.data.transforms import source_short_side

        size = data.input_shape[-1]
        steps.append(f"(files: short side resized to {source_short_side(size, data.crop_fraction)}, centre "
                     f"{size}x{size} crop, bilinear)")
    return ", ".join(steps)


class RebuildableDDP(nn.Module):
    """A ``DistributedDataParallel`` wrapper that can be built again when the trainable parameters change.

    DDP reduces the gradients of the parameters that required one when it was built, and only those: after an
    unfreeze, a wrapper built while the backbone was frozen leaves every rank's backbone to drift on its own
    gradients (measured with 2 gloo processes: conv1 differed between the ranks while fc matched, with no error).
    :meth:`rebuild` removes the old wrapper's gradient hooks and builds a new one, which also gives every rank rank
    0's weights. Checkpoints see the bare model (:meth:`state_dict`), as ignite's ``Checkpoint`` does for a DDP
    wrapper.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.module = model
        object.__setattr__(self, "ddp", idist.auto_model(model))  # not a submodule: its parameters are module's

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.ddp(*args, **kwargs)

    def train(self, mode: bool = True) -> RebuildableDDP:
        super().train(mode)
        self.ddp.train(mode)
        return self

    def no_sync(self) -> Any:
        """The wrapper's ``no_sync()`` (gradient accumulation without a reduction per batch)."""
        return self.ddp.no_sync()

    def rebuild(self) -> None:
        """Replace the wrapper with one built for the parameters that require gradients now."""
        self.ddp._remove_autograd_hooks()
        object.__setattr__(self, "ddp", idist.auto_model(self.module))

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def wrap_model(classifier: Classifier) -> nn.Module:
    """The model the trainer steps: ``idist.auto_model(classifier)`` (``DistributedDataParallel`` with several
    processes), or a :class:`RebuildableDDP` when the backbone is frozen now and will be unfrozen."""
    if idist.get_world_size() > 1 and classifier.backbone_frozen:
        return RebuildableDDP(classifier.to(idist.device()))
    return idist.auto_model(classifier)


class BackboneUnfreeze:
    """At the first epoch after ``freeze_epochs``, unfreeze the backbone and rebuild the DDP wrapper; say it in
    the summary lines (``| backbone frozen`` on the frozen epochs, ``| backbone unfrozen`` on the next one)."""

    def __init__(self, classifier: Classifier, model: nn.Module, freeze_epochs: int) -> None:
        self.classifier, self.model, self.freeze_epochs = classifier, model, freeze_epochs

    def __call__(self, engine: Engine) -> None:
        if self.classifier.backbone_frozen and engine.state.epoch > self.freeze_epochs:
            self.classifier.set_backbone_frozen(False)
            if isinstance(self.model, RebuildableDDP):
                self.model.rebuild()

    def note(self, engine: Engine) -> str:
        epoch = engine.state.epoch
        return " | backbone frozen" if epoch <= self.freeze_epochs else \
            " | backbone unfrozen" if epoch == self.freeze_epochs + 1 else ""


def attach_backbone_unfreeze(trainer: Engine, classifier: Classifier, model: nn.Module, freeze_epochs: int,
                             summary: EpochSummary) -> BackboneUnfreeze | None:
    """Unfreeze the backbone when epoch ``freeze_epochs + 1`` starts; None without ``--freeze-epochs``."""
    if freeze_epochs == 0:
        return None
    handler = BackboneUnfreeze(classifier, model, freeze_epochs)
    trainer.add_event_handler(Events.EPOCH_STARTED, handler)
    summary.notes.append(handler.note)
    return handler
