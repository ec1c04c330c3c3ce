"""What happens to a source image before the model sees it: uint8 in, uint8 out, a pure function of the sample's seed.

Float conversion and normalisation happen later, on the device, in the saved model's preprocessing
(:class:`ignite_app.models.Preprocess`); everything here stays uint8, four times less memory to copy between
processes and to the device than float32.

- **Training** (:class:`TrainTransform`): ``RandomResizedCrop(size, scale=(--scale-min, 1))`` and a horizontal flip
  from ``torchvision.transforms.v2``, then the optional per-sample ``policy`` hook (an augmentation policy applied
  to the uint8 crop under the same seed). :class:`PaddedCropTransform` is the recipe of the small standard
  datasets (CIFAR: 4-pixel padded crop and flip; MNIST-like: 2-pixel crop, no flip).
- **Validation, evaluation, prediction** (:class:`EvalTransform`): the short side resized to
  :func:`source_short_side` (``ceil(size / crop_fraction)``: 256 for 224) and a centre crop of ``size``.

``transforms.v2`` draws from torch's global generator and takes no generator argument, so each sample's transform
runs under :func:`run_seeded`: the global CPU generator forked, seeded with the sample's seed (a pure function of
``(--seed, epoch, pass, sample)``, see :class:`~ignite_app.data.samplers.EpochBatchSampler`) and restored. Which
worker process runs it, how many there are, and whether the run was resumed in between change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchvision.transforms import v2

DEFAULT_CROP_FRACTION = 0.875  # 224 out of 256: timm's and torchvision's reference recipes
DEFAULT_SCALE_MIN = 0.08  # RandomResizedCrop's smallest share of the image area (torchvision's default)

Transform = Callable[[Tensor, "int | None"], Tensor]  # (uint8 image, sample seed or None) -> uint8 image
# A per-sample augmentation policy: (uint8 (C, H, W) image, sample seed) -> uint8 image of the same shape.
Policy = Callable[[Tensor, int], Tensor]


def source_short_side(image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION) -> int:
    """The short side images are decoded to, cached at and validated from: ``ceil(image_size / crop_fraction)``."""
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size!r}")
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1] (the centre crop's share of the short side), "
                         f"got {crop_fraction!r}")
    return math.ceil(round(image_size / crop_fraction, 6))  # round: 224 / 0.875 must not become 257


def run_seeded(ops: Callable[[Tensor], Tensor], image: Tensor, seed: int) -> Tensor:
    """``ops(image)`` with torch's global CPU generator seeded by ``seed``, and restored afterwards.

    Seeding the global generator per sample makes the result a pure function of the seed; restoring it leaves the
    caller's stream as it was (with 0 workers the caller is the training process, whose dropout draws from it).
    """
    with torch.random.fork_rng(devices=[]):
        # not torch.manual_seed: that also reseeds every CUDA device, which fork_rng(devices=[]) does not restore
        torch.default_generator.manual_seed(seed)
        return ops(image)


def _unchanged(image: Tensor) -> Tensor:
    return image


class SeededTransform:
    """Random ``transforms.v2`` steps run by :func:`run_seeded` with the sample's seed (training only).

    Args:
        steps: the random steps, in order (none: the policy alone).
        policy: applied after the steps, to the uint8 image, with the same seed and under the same seeded generator
            (so a policy that draws from torch's global generator is as reproducible as one that derives its own
            draws from the seed); None: no policy.
    """

    def __init__(self, steps: Sequence[v2.Transform], policy: Policy | None = None) -> None:
        self.ops = v2.Compose(list(steps)) if steps else _unchanged  # a function: picklable for spawned workers
        self.policy = policy

    def __call__(self, image: Tensor, seed: int | None) -> Tensor:
        if seed is None:
            raise TypeError("a training transform needs each sample's seed: fetch training samples by "
                            "SampleKey(index, seed) (EpochBatchSampler(with_seeds=True)), not by index")
        return run_seeded(lambda x: self._apply(x, seed), image, seed)

    def _apply(self, image: Tensor, seed: int) -> Tensor:
        image = self.ops(image)
        return image if self.policy is None else self.policy(image, seed)


class TrainTransform(SeededTransform):
    """``RandomResizedCrop(image_size, scale=(scale_min, 1))``, a horizontal flip, then ``policy`` (if any).

    Args:
        image_size: the side of the square crop.
        scale_min: the smallest crop's share of the source image's area (``--scale-min``).
        flip: whether to mirror half of the crops.
        policy: a per-sample augmentation policy, ``policy(uint8 image, seed) -> uint8 image``.
    """

    def __init__(self, image_size: int, scale_min: float = DEFAULT_SCALE_MIN, flip: bool = True,
                 policy: Policy | None = None) -> None:
        if not 0 < scale_min <= 1:
            raise ValueError(f"scale_min must be in (0, 1] (the smallest crop's share of the image area), "
                             f"got {scale_min!r}")
        crop = v2.RandomResizedCrop(image_size, scale=(scale_min, 1.0), antialias=True)
        self.size = image_size
        super().__init__([crop, v2.RandomHorizontalFlip()] if flip else [crop], policy)


class PaddedCropTransform(SeededTransform):
    """A random ``image_size`` crop of the image padded by ``padding`` zero pixels, and a flip if ``flip``: the
    usual augmentation of CIFAR (padding 4, flip) and of MNIST-like digits (padding 2, no flip)."""

    def __init__(self, image_size: int, padding: int, flip: bool, policy: Policy | None = None) -> None:
        if padding < 0:
            raise ValueError(f"padding must be a number of pixels >= 0, got {padding!r}")
        crop = v2.RandomCrop(image_size, padding=padding)
        self.size = image_size
        super().__init__([crop, v2.RandomHorizontalFlip()] if flip else [crop], policy)


class PolicyOnViewTransform(SeededTransform):
    """The validation view (the short side resized, a centre crop), then ``policy``: training images with
    ``--no-augment`` and an augmentation policy."""

    def __init__(self, image_size: int, crop_fraction: float, policy: Policy) -> None:
        self.size = image_size
        resize = v2.Resize(source_short_side(image_size, crop_fraction), antialias=True)
        super().__init__([resize, v2.CenterCrop(image_size)], policy)


class EvalTransform:
    """The short side resized to ``source_short_side(image_size, crop_fraction)``, then a centre crop."""

    def __init__(self, image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION) -> None:
        self.size, self.short_side = image_size, source_short_side(image_size, crop_fraction)
        self.resize = v2.Resize(self.short_side, antialias=True)
        self.crop = v2.CenterCrop(image_size)

    def __call__(self, image: Tensor, seed: int | None = None) -> Tensor:
        if min(image.shape[-2:]) != self.short_side:  # a source image is usually at the size already
            image = self.resize(image)
        return self.crop(image)
