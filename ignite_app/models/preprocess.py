"""The input contract of every network the app trains: raw pixels in, float conversion and normalisation inside.

The model the app trains, saves, evaluates and exports is a :class:`Classifier`: a :class:`Preprocess` module
followed by the network. Data loaders hand it uint8 images (0..255) or float images in [0, 1], on the device; the
preprocessing converts them to float and normalises them with the mean and std it stores as buffers. The
normalisation constants are therefore part of the model's weights: whoever loads ``best_model.pt`` (evaluation,
prediction, an export) feeds it the same raw pixels training did, and nothing has to be kept in step by hand.

Two optional steps adapt the images to a network built for other ones: a grayscale image is repeated to
the 3 channels of a torchvision network (:class:`ChannelRepeat`), and images of a fixed size (the 8x8 digits) are
resized on the device to the network's input size. Neither has state, so the saved keys stay ``preprocess.mean``
and ``preprocess.std``; :meth:`Preprocess.description` says what the module does, checkpoints store it under
``normalization``, and :meth:`Preprocess.from_description` rebuilds the same module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


class ChannelRepeat(nn.Module):
    """Repeat a 1-channel image to ``channels``: how a grayscale dataset feeds a 3-channel torchvision network.

    It has no parameters or buffers, so putting it first in :class:`Preprocess` (before normalising with the
    pretrained 3-channel mean/std) leaves the saved state_dict keys unchanged. Equivalent to summing the first
    convolution's weights over its input channels, at the cost of a 3-channel first layer.
    """

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == self.channels:
            return x
        if x.shape[1] != 1:
            raise ValueError(f"ChannelRepeat takes 1 or {self.channels} channels, got a batch of shape "
                             f"{tuple(x.shape)}")
        return x.repeat(1, self.channels, 1, 1)  # (B, 1, H, W) -> (B, 3, H, W)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


def to_uint8(images: Tensor) -> Tensor:
    """Raw pixels as uint8: float images in [0, 1] scaled to 0..255 and rounded; uint8 images as they are."""
    if images.dtype == torch.uint8:
        return images
    return images.float().mul(255).round_().clamp_(0, 255).to(torch.uint8)


class Preprocess(nn.Module):
    """uint8 (0..255) or float ([0, 1]) images (B, C, H, W) -> float32, normalised per channel.

    Args:
        mean: per-channel mean on the [0, 1] scale, one value per channel the network takes (after the repeat).
        std: per-channel standard deviation on the same scale (positive).
        repeat_channels: repeat 1-channel images to this many channels first (a 3-channel network fed grayscale
            images); None: no repeat.
        size: resize the images to size x size after normalising, unless they have that size already (a dataset
            of small fixed-size images fed to a network trained at a larger size); None: no resize.
        interpolation: how ``size`` resizes: bilinear, bicubic or nearest (antialiased when shrinking).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], repeat_channels: int | None = None,
                 size: int | None = None, interpolation: str = "bilinear") -> None:
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} must have one value per channel")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {tuple(std)}")
        if repeat_channels is not None and repeat_channels != len(mean):
            raise ValueError(f"repeat_channels={repeat_channels} needs one mean and std per repeated channel, got "
                             f"{len(mean)}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))
        self.repeat = ChannelRepeat(repeat_channels) if repeat_channels is not None else None
        self.size, self.interpolation = size, interpolation

    @property
    def channels(self) -> int:
        """Channels of the normalised output (the network's input)."""
        return self.mean.numel()

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, int, int]:
        """The (C, H, W) the network receives for raw images of ``input_shape``."""
        _, height, width = input_shape
        return (self.channels, *((self.size, self.size) if self.size else (height, width)))  # type: ignore[return-value]

    def forward(self, x: Tensor) -> Tensor:
        if self.repeat is not None:
            x = self.repeat(x)
        # (x / 255 - mean) / std as one multiply-add: x * scale - shift, per channel
        scale = (1.0 / 255.0 if x.dtype == torch.uint8 else 1.0) / self.std
        x = x.float() * scale.view(1, -1, 1, 1) - (self.mean / self.std).view(1, -1, 1, 1)
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            shrinks = min(x.shape[-2:]) > self.size
            x = F.interpolate(x, size=(self.size, self.size), mode=self.interpolation,
                              antialias=shrinks and self.interpolation != "nearest")
        return x

    def description(self) -> dict[str, Any]:
        """What this module does, as plain values (the checkpoints' ``normalization`` entry)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(),
                "repeat_channels": self.repeat.channels if self.repeat is not None else None,
                "size": self.size, "interpolation": self.interpolation}

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> Preprocess:
        """The module :meth:`description` describes (older checkpoints hold only ``mean`` and ``std``)."""
        return cls(description["mean"], description["std"], description.get("repeat_channels"),
                   description.get("size"), description.get("interpolation") or "bilinear")

    def extra_repr(self) -> str:
        resize = f", size={self.size}, interpolation={self.interpolation}" if self.size else ""
        return (f"mean={[round(v, 4) for v in self.mean.tolist()]}, std={[round(v, 4) for v in self.std.tolist()]}"
                f"{resize}")


class Classifier(nn.Module):
    """``network(preprocess(pixels))``: the model the app trains and saves.

    Its ``state_dict`` holds ``preprocess.mean``, ``preprocess.std`` and ``network.*``.

    Args:
        preprocess: raw pixels to the network's input.
        network: the network.
        head: the parameter names of the network's classifier head (``ZooInfo.head``), for parameter groups and
            a frozen backbone; empty when unknown.
    """

    def __init__(self, preprocess: Preprocess, network: nn.Module, head: Iterable[str] = ()) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.network = network
        self.head = tuple(head)
        self.backbone_frozen = False

    def forward(self, x: Tensor) -> Tensor:
        return self.network(self.preprocess(x))  # (B, num_classes)

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Freeze (``requires_grad`` off) or unfreeze every network parameter outside the head.

        While frozen, :meth:`train` keeps the backbone's batch-norm layers in eval mode, so that their running
        statistics do not move either.
        """
        from ignite_app.models.finetune import set_backbone_frozen

        set_backbone_frozen(self.network, self.head, frozen)
        self.backbone_frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> Classifier:
        # The training step calls model.train() on every iteration (through a DistributedDataParallel wrapper's
        # train() too): a frozen backbone's batch norm is put back in eval mode right here.
        super().train(mode)
        if mode and self.backbone_frozen:
            from ignite_app.models.finetune import backbone_norm_eval

            backbone_norm_eval(self.network, self.head)
        return self
