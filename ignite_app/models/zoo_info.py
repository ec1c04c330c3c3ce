"""What the app must know about a zoo network besides its weights: head, input sizes, channels, pretrained config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

Source = Literal["torchvision", "timm", "registered"]
ChannelMode = Literal["native", "timm_in_chans", "repeat"]


@dataclass(frozen=True)
class PretrainedConfig:
    """The preprocessing the network's default pretrained weights were trained with.

    ``mean`` and ``std`` have one entry per channel of the network's input (after any channel repeat), so the
    app's ``Preprocess`` can normalise with them as they are.
    """

    weights: str                      # which weights this describes: "ResNet18_Weights.IMAGENET1K_V1", "timm/..."
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int]       # (H, W) of the crop the weights were evaluated at
    resize_size: int                  # the shorter side is resized to this, then centre-cropped to input_size
    crop_pct: float                   # input_size / resize_size (timm's name)
    interpolation: str                # "bilinear", "bicubic", "nearest" (torchvision.transforms.InterpolationMode)


@dataclass(frozen=True)
class ZooInfo:
    """How :func:`create_network` built a network, everything the app reads from it.

    Rebuilding with ``create_network(name, num_classes, in_chans, drop_path=drop_path)`` (never pretrained) gives
    the same architecture, so a resumed run, ``evaluate.py`` and ``predict.py`` need only the checkpoint.
    """

    name: str                               # qualified: "torchvision:resnet18", "timm:test_resnet", "cnn"
    source: Source
    num_classes: int
    in_chans: int                           # channels of the images the app feeds to the Classifier
    head: tuple[str, ...]                   # parameter names of the classifier (they depend on num_classes);
                                            # empty before the network is built (static_info)
    config: PretrainedConfig | None         # None for registered networks without ModelSpec mean and std
    channels: ChannelMode                   # native: built for in_chans; timm_in_chans: timm's first conv built
                                            # for in_chans (pretrained weights summed/adapted by timm);
                                            # repeat: a 1-channel image is repeated to 3 before the network
    min_size: tuple[int, int] | None = None     # smallest (H, W) accepted, where declared
    fixed_size: tuple[int, int] | None = None   # the only (H, W) accepted (ViT-style networks)
    drop_path: float | None = None          # the rate asked for; None: the architecture's default
    pretrained: bool = False                # whether the default pretrained weights were loaded
    weights_file: str | None = None         # the cached file they came from
    load_summary: str | None = None         # the log line of that load: tensors loaded, left out
    ignore_prefixes: tuple[str, ...] = ()   # weight-file keys to skip (auxiliary classifiers that were dropped)
    first_conv: tuple[str, ...] = ()        # timm: input convs whose weights adapt to in_chans when loading

    @property
    def repeat_channels(self) -> int | None:
        """Channels to repeat a 1-channel image to before normalising, or None (the preprocessing's
        ``ChannelRepeat``)."""
        return 3 if self.channels == "repeat" else None

    @property
    def network_in_chans(self) -> int:
        """Channels the network itself takes."""
        return 3 if self.channels == "repeat" else self.in_chans

    def describe(self, weights: str | None = None) -> str:
        """One line for the run log: source, channel handling, input size, starting weights (``weights`` when they
        come from elsewhere: a --weights file, a resumed checkpoint), head."""
        size = (f"fixed input {self.fixed_size[0]}x{self.fixed_size[1]}" if self.fixed_size
                else f"min input {self.min_size[0]}x{self.min_size[1]}" if self.min_size else "any input size")
        chans = {"native": f"{self.in_chans} channel(s)",
                 "timm_in_chans": f"{self.in_chans} channel(s) (timm in_chans, first layer adapted)",
                 "repeat": f"{self.in_chans} channel repeated to 3"}[self.channels]
        if weights is None:
            weights = f"pretrained {self.config.weights}" if self.pretrained and self.config else "random init"
        return f"{self.name}: {self.source}, {chans}, {size}, {weights}, head {', '.join(self.head)}"


def registered_info(name: str, network: nn.Module, num_classes: int, in_chans: int, head: str | None = None,
                    config: PretrainedConfig | None = None, min_size: tuple[int, int] | None = None) -> ZooInfo:
    """A :class:`ZooInfo` for a registered network (``cnn``, ``mlp``, plugins, a network given from Python).

    Args:
        head: the dotted name of its classifier module (``ModelSpec.head``); default: the last ``nn.Linear`` or
            ``nn.Conv2d`` in module order whose output size is ``num_classes``, so that ``--weights`` and
            ``--freeze-epochs`` work for such networks too.
        config: the input it expects (``ModelSpec`` mean, std and input size), for ``--normalization pretrained``.
        min_size: the smallest (H, W) it accepts (``ModelSpec.min_input_size``).

    Raises:
        ValueError: no head is named and none can be found.
    """
    if head is None:
        for module_name, module in network.named_modules():
            out = getattr(module, "out_features", getattr(module, "out_channels", None))
            if isinstance(module, (nn.Linear, nn.Conv2d)) and out == num_classes:
                head = module_name
    if head is None:
        raise ValueError(f"network {name!r} has no Linear or Conv2d layer with {num_classes} outputs to use as "
                         "its classifier head; name it with ModelSpec(head=...)")
    try:
        module = network.get_submodule(head)
    except AttributeError:
        raise ValueError(f"network {name!r} has no module {head!r} (its ModelSpec head)") from None
    names = tuple(f"{head}.{p}" if head else p for p, _ in module.named_parameters())
    return ZooInfo(name=name, source="registered", num_classes=num_classes, in_chans=in_chans, head=names,
                   config=config, channels="native", min_size=min_size)
