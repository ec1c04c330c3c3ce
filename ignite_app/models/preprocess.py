"""The input contract of every network the app trains: raw pixels in, float conversion and normalisation inside.

The model the app trains, saves, evaluates and exports is a :class:`Classifier`: a :class:`Preprocess` module
followed by the network. Data loaders hand it uint8 images (0..255) or float images in [0, 1], on the device; the
preprocessing converts them to float and normalises them with the mean and std it stores as buffers. The
normalisation constants are therefore part of the model's weights: whoever loads ``best_model.pt`` (evaluation,
prediction, an export) feeds it the same raw pixels training did, and nothing has to be kept in step by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def to_uint8(images: Tensor) -> Tensor:
    """Raw pixels as uint8: float images in [0, 1] scaled to 0..255 and rounded; uint8 images as they are."""
    if images.dtype == torch.uint8:
        return images
    return images.float().mul(255).round_().clamp_(0, 255).to(torch.uint8)


class Preprocess(nn.Module):
    """uint8 (0..255) or float ([0, 1]) images (B, C, H, W) -> float32, normalised per channel.

    Args:
        mean: per-channel mean of the training images on the [0, 1] scale.
        std: per-channel standard deviation on the same scale (positive).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} must have one value per channel")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))

    @property
    def channels(self) -> int:
        return self.mean.numel()

    def forward(self, x: Tensor) -> Tensor:
        # (x / 255 - mean) / std as one multiply-add: x * scale - shift, per channel
        scale = (1.0 / 255.0 if x.dtype == torch.uint8 else 1.0) / self.std
        return x.float() * scale.view(1, -1, 1, 1) - (self.mean / self.std).view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"mean={[round(v, 4) for v in self.mean.tolist()]}, std={[round(v, 4) for v in self.std.tolist()]}"


class Classifier(nn.Module):
    """``network(preprocess(pixels))``: the model the app trains and saves.

    Its ``state_dict`` holds ``preprocess.mean``, ``preprocess.std`` and ``network.*``.
    """

    def __init__(self, preprocess: Preprocess, network: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        return self.network(self.preprocess(x))  # (B, num_classes)
