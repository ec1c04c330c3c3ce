"""Augmentation policies on uint8 images (``--auto-augment``, ``--random-erasing``), deterministic per sample.

:func:`apply_policy` runs torchvision's ``transforms.v2`` policies (TrivialAugmentWide, RandAugment, AugMix) and
``RandomErasing`` on one uint8 (C, H, W) image. They draw from torch's global generator, so they run inside
``torch.random.fork_rng`` seeded from the sample's seed: the result is a pure function of ``(image, seed, policy,
erasing_p)``, whichever worker process loads the sample, and the training process's own random state (dropout,
mixing) is left as it was. The seed is the one :class:`~ignite_app.data.samplers.SampleKey` carries, a pure function
of ``(seed, epoch, pass, index)``: a resumed run augments every sample as the uninterrupted run did.

torchvision is imported inside the functions: the command lines' ``--help`` must not wait for it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import torch
from torch import Tensor

POLICIES = ("none", "trivialaugment", "randaugment", "augmix")


@lru_cache(maxsize=None)
def _policy(name: str) -> Any:
    """The torchvision transform of a policy name (built once per process: the transforms hold no state)."""
    from torchvision.transforms import v2

    policies = {"trivialaugment": v2.TrivialAugmentWide, "randaugment": v2.RandAugment, "augmix": v2.AugMix}
    return policies[name]()


@lru_cache(maxsize=None)
def _erasing(p: float) -> Any:
    from torchvision.transforms import v2

    return v2.RandomErasing(p=p, value=0)  # black boxes: a fixed value keeps the image uint8


def apply_policy(image: Tensor, seed: int, policy: str, erasing_p: float = 0.0) -> Tensor:
    """``image`` (uint8, (C, H, W)) transformed by ``policy``, then erased with probability ``erasing_p``.

    Args:
        image: a uint8 (C, H, W) image, 1 or 3 channels.
        seed: the sample's seed; the same seed gives the same result.
        policy: one of :data:`POLICIES` (``"none"``: no policy).
        erasing_p: the probability of erasing a random box (0: never).

    Returns:
        A uint8 (C, H, W) tensor.

    Raises:
        ValueError: an unknown policy, or an image that is not uint8 (C, H, W).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; available: {', '.join(POLICIES)}")
    if image.dtype != torch.uint8 or image.ndim != 3:
        raise ValueError(f"apply_policy takes a uint8 (C, H, W) image, got {image.dtype} {tuple(image.shape)}")
    with torch.random.fork_rng(devices=[]):  # the caller's CPU generator is restored on the way out
        torch.manual_seed(seed % 2**63)
        if policy != "none":
            image = _policy(policy)(image)
        if erasing_p > 0:
            image = _erasing(float(erasing_p))(image)
    return image


def sample_policy(policy: str, erasing_p: float = 0.0) -> Callable[[Tensor, int], Tensor] | None:
    """``--auto-augment`` and ``--random-erasing`` as a per-sample step ``fn(uint8 image, seed) -> uint8 image`` for
    the training transforms of :mod:`ignite_app.data.transforms`; None when neither is on.

    The step draws from the seed mixed with a constant: the crop before it is drawn from the sample's seed itself, and
    the same stream twice would tie the policy's choices to the crop's.
    """
    if policy == "none" and erasing_p <= 0:
        return None
    return partial(_policy_step, policy=policy, erasing_p=erasing_p)  # a partial of a function: workers unpickle it


def _policy_step(image: Tensor, seed: int, policy: str, erasing_p: float) -> Tensor:
    return apply_policy(image, seed ^ _POLICY_STREAM, policy, erasing_p)


_POLICY_STREAM = 0x5DEECE66D  # any constant: it separates the policy's draws from the crop's
