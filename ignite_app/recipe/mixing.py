"""MixUp and CutMix of a training batch (``--mixup-alpha``, ``--cutmix-alpha``, ``--mix-prob``).

Applied in the training step, on the device, after the batch arrived as raw pixels and before the model. The
images are mixed as floats on the [0, 1] scale (uint8 pixels / 255), which the model's preprocessing takes as they
are: normalisation is affine per channel and MixUp's weights sum to 1, CutMix copies pixels, so mixing before or
after the normalisation gives the same input (and the model's raw-pixel contract stays as it is). torchvision's v2
``MixUp``/``CutMix`` are not used: they refuse uint8 images and draw from the global generator, which would tie the
mixing to everything else that draws from it.

Every random choice (mix or not, which of the two, the share, the box) comes from a generator seeded with
``(seed, epoch, iteration, rank)``: a pure function of where the batch is in the run, so a resumed run mixes as the
uninterrupted one did. Each image is mixed with its neighbour in the batch (``roll(1)``, as torchvision does): the
batch order is random already. The targets are the label-smoothed one-hot vectors (smoothing before mixing, as
timm does), mixed with the same share; CutMix's share is the box's actual area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ignite_app.recipe.losses import soft_targets

MIX_STREAM = 3  # the generator's last seed word: unrelated to the samplers' streams (0, 1, 2)


@dataclass(frozen=True)
class Mix:
    """What was drawn for one batch: ``kind`` is ``"none"``, ``"mixup"`` or ``"cutmix"``; ``share`` the weight of
    each image itself (1 - share: its neighbour's); ``box`` CutMix's (top, bottom, left, right)."""

    kind: str
    share: float = 1.0
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class BatchMixer:
    """Mix a batch of images and build its soft targets.

    Args:
        num_classes: C.
        mixup_alpha: MixUp's Beta(a, a) parameter (0: off).
        cutmix_alpha: CutMix's (0: off); with both, each mixed batch uses one of them with equal probability.
        prob: the probability that a batch is mixed.
        smoothing: label smoothing of the targets, before mixing.
        seed: the run's seed.
        rank: this process's rank (each process mixes its own batches differently).
    """

    num_classes: int
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    smoothing: float = 0.0
    seed: int = 0
    rank: int = 0

    def draw(self, epoch: int, iteration: int, height: int, width: int) -> Mix:
        """The mixing of the batch at ``(epoch, iteration)``: a pure function of these and of the mixer."""
        rng = np.random.default_rng([self.seed, epoch, iteration, self.rank, MIX_STREAM])
        if rng.random() >= self.prob or not (self.mixup_alpha > 0 or self.cutmix_alpha > 0):
            return Mix("none")
        cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or rng.random() < 0.5)
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        share = float(rng.beta(alpha, alpha))
        if not cutmix:
            return Mix("mixup", share)
        # a box of area (1 - share) x H x W around a random centre, clipped at the borders
        cut = math.sqrt(1.0 - share)
        cy, cx = int(rng.integers(height)), int(rng.integers(width))
        half_h, half_w = int(height * cut) // 2, int(width * cut) // 2
        top, bottom = max(cy - half_h, 0), min(cy + half_h, height)
        left, right = max(cx - half_w, 0), min(cx + half_w, width)
        return Mix("cutmix", 1.0 - (bottom - top) * (right - left) / (height * width), (top, bottom, left, right))

    def __call__(self, x: Tensor, y: Tensor, epoch: int, iteration: int) -> tuple[Tensor, Tensor]:
        """``(images, targets)``: the batch ``x`` (B, C, H, W), mixed as floats in [0, 1] or left as it is, and its
        soft targets (B, num_classes)."""
        target = soft_targets(y, self.num_classes, self.smoothing)  # (B, num_classes)
        mix = self.draw(epoch, iteration, x.shape[-2], x.shape[-1])
        if mix.kind == "none":
            return x, target
        images = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        other = images.roll(1, dims=0)
        if mix.box is not None:
            top, bottom, left, right = mix.box
            images = images.clone()
            images[..., top:bottom, left:right] = other[..., top:bottom, left:right]
        else:
            images = images * mix.share + other * (1.0 - mix.share)
        return images, target * mix.share + target.roll(1, dims=0) * (1.0 - mix.share)
