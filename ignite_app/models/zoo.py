"""The model zoos behind ``--model``: ``torchvision:NAME`` and ``timm:NAME`` beside the registered networks.

torchvision and timm are imported only when a zoo name is listed, checked or built, so ``--help`` stays fast.
Every network comes with a :class:`ZooInfo`: its classifier head (for freezing and for loading weights of another
class count), its pretrained configuration (mean, std, sizes, interpolation), the input sizes it accepts and how
the image channels were matched to it. The zoos are the model registry's sources (``ignite_app.registry``):
``MODELS.get("timm:resnet18")`` returns a :class:`ZooModel`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from ignite_app.errors import UsageError
from ignite_app.models import pretrained as hub
from ignite_app.models import zoo_timm, zoo_torchvision
from ignite_app.models.zoo_info import ZooInfo
from ignite_app.registry import UnknownName

SOURCES: dict[str, ModuleType] = {"torchvision": zoo_torchvision, "timm": zoo_timm}
SIZE_FLAG = "--image-size"
_PROBE_SIZES = (16, 32, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)


def split_name(name: str) -> tuple[str, str] | None:
    """``("timm", "resnet18")`` for ``"timm:resnet18"``; None for a name without a zoo prefix."""
    source, sep, arch = name.partition(":")
    return (source, arch) if sep and source in SOURCES else None


@lru_cache(maxsize=None)
def source_names(source: str) -> tuple[str, ...]:
    """The architectures of one zoo that the app can drive (the names after ``source:``)."""
    return tuple(SOURCES[source].names())


def list_models(pattern: str | None = None, registered: Iterable[str] = ()) -> list[str]:
    """All names ``--model`` takes: the registered ones, then ``torchvision:NAME`` and ``timm:NAME``.

    Args:
        pattern: An fnmatch pattern (``*``, ``?``, ``[...]``), matched case-insensitively against the whole name
            or the part after the colon: ``resnet1*`` finds both zoos' ResNets.
        registered: The registry's names (``cnn``, ``mlp``, plugins).

    Only what the app can drive is listed (refused architectures are left out). No network is built and
    nothing is downloaded: the names come from the zoos' registries.
    """
    names = sorted(set(registered)) + [f"{source}:{arch}" for source in SOURCES for arch in source_names(source)]
    if pattern is None:
        return names
    pattern = pattern.lower()
    return [n for n in names
            if fnmatch.fnmatchcase(n.lower(), pattern) or fnmatch.fnmatchcase(n.partition(":")[2].lower(), pattern)]


@dataclass(frozen=True)
class ZooModel:
    """A model registry entry for a zoo network (what ``MODELS.get("torchvision:resnet18")`` returns)."""

    name: str  # qualified: "torchvision:resnet18"

    def create(self, num_classes: int, in_chans: int, pretrained: bool = False,
               drop_path: float | None = None) -> tuple[nn.Module, ZooInfo]:
        """See :func:`create_network`."""
        return create_network(self.name, num_classes, in_chans, pretrained, drop_path)

    def static_info(self, num_classes: int, in_chans: int, drop_path: float | None = None) -> ZooInfo:
        """See :func:`static_info`."""
        return static_info(self.name, num_classes, in_chans, drop_path)


def resolve(source: str, arch: str) -> ZooModel | None:
    """The registry entry of ``source:arch``; None for an unknown name (the registry then suggests close ones).

    Raises:
        UnknownName: the zoo has the architecture but the app cannot drive it; the message says why.
    """
    if arch in source_names(source):
        return ZooModel(f"{source}:{arch}")
    reason = _refusal(source, arch)
    if reason is not None:
        raise UnknownName(f"--model {source}:{arch} cannot be used: {reason}")
    return None


def _refusal(source: str, arch: str) -> str | None:
    if source == "timm":
        return zoo_timm.REFUSED.get(arch)
    if arch in _torchvision_all():
        return "the app has no classifier-head entry for its family"
    return None


def _check(name: str) -> tuple[str, str]:
    split = split_name(name)
    if split is None:
        raise ValueError(f"the zoos build torchvision:NAME and timm:NAME networks, got {name!r}; registered "
                         "networks are built by the registry")
    if resolve(*split) is None:
        raise UsageError(f"unknown model {name!r}; --list-models [PATTERN] lists the names --model takes")
    return split


def create_network(name: str, num_classes: int, in_chans: int, pretrained: bool = False,
                   drop_path: float | None = None) -> tuple[nn.Module, ZooInfo]:
    """Build a zoo network with a classifier head for ``num_classes`` classes.

    Args:
        name: ``torchvision:NAME`` or ``timm:NAME``.
        num_classes: Classes of the dataset (at least 2).
        in_chans: Channels of the dataset's images: timm builds its first layer for them; torchvision networks
            take 3, and a 1-channel image is repeated (``info.repeat_channels``, the preprocessing's
            :class:`~ignite_app.models.preprocess.ChannelRepeat`).
        pretrained: Load the architecture's default pretrained weights from the zoo's cache, downloading them
            if needed (all but the head, which is built for ``num_classes``).
        drop_path: Stochastic-depth rate (timm's ``drop_path_rate``, torchvision's ``stochastic_depth_prob``);
            None keeps the architecture's default.

    Returns:
        The network (in training mode) and its :class:`ZooInfo`. The same call with ``pretrained=False`` rebuilds
        the same architecture, which is how a checkpoint is reloaded.

    Raises:
        UsageError: An unknown or refused name, a network without stochastic depth given ``drop_path``, or
            pretrained weights that are neither cached nor downloadable (see ``pretrained.fetch``).
    """
    source, arch = _check_arguments(name, num_classes, in_chans, drop_path)
    return SOURCES[source].create(arch, num_classes, in_chans, pretrained, drop_path)


def static_info(name: str, num_classes: int, in_chans: int, drop_path: float | None = None) -> ZooInfo:
    """What :func:`create_network` will report about ``name`` (pretrained configuration, accepted sizes, channel
    handling), read from the zoo's tables without building the network; ``head`` is left empty."""
    source, arch = _check_arguments(name, num_classes, in_chans, drop_path)
    return SOURCES[source].static_info(arch, num_classes, in_chans, drop_path)


def _check_arguments(name: str, num_classes: int, in_chans: int, drop_path: float | None) -> tuple[str, str]:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got num_classes={num_classes!r}")
    if not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
    if drop_path is not None and not 0.0 <= drop_path < 1.0:
        raise UsageError(f"--drop-path must be in [0, 1), got {drop_path}")
    try:
        return _check(name)
    except UnknownName as err:
        raise UsageError(str(err)) from None


def fetch_pretrained(name: str) -> Path:
    """The cached file of ``name``'s default pretrained weights, downloaded first if needed (see
    ``pretrained.fetch``: bounded in time, a UsageError naming the cache folder and ``--weights`` when it fails)."""
    source, arch = _check(name)
    return hub.fetch(SOURCES[source].weights_source(arch), name)


def check_input_size(info: ZooInfo, image_size: int | tuple[int, int], probe: bool = True) -> None:
    """Raise a UsageError naming the accepted sizes and ``--image-size`` if the network cannot take this size.

    The declared limits are checked first (a fixed size; torchvision's ``meta["min_size"]``; timm's
    ``min_input_size``; a registered ``ModelSpec.min_input_size``). With ``probe``, a zoo network's architecture
    twin built on the meta device (no memory, no compute) then runs one forward at that size, which catches
    networks that shrink small images to nothing (a ConvNeXt at 8x8). A probe that cannot run on the meta device at
    all decides nothing.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    native = info.config.input_size if info.config else None
    if info.fixed_size and (height, width) != info.fixed_size:
        fh, fw = info.fixed_size
        raise UsageError(f"{info.name} takes {fh}x{fw} images only, got {height}x{width}; set {SIZE_FLAG} {fh}")
    if info.min_size and (height < info.min_size[0] or width < info.min_size[1]):
        mh, mw = info.min_size
        pretrained_at = f" (it was pretrained at {native[0]}x{native[1]})" if native else ""
        raise UsageError(f"{info.name} takes images of at least {mh}x{mw}, got {height}x{width}; set {SIZE_FLAG} "
                         f"{max(mh, mw)} or more{pretrained_at}")
    if probe and info.source in SOURCES:
        _probe(info, height, width)


def _probe(info: ZooInfo, height: int, width: int) -> None:
    twin = _meta_twin(info)
    error = None if twin is None else _runs(twin, info, height, width)
    if error is None:
        return
    native = info.config.input_size
    if _runs(twin, info, *native) is not None:
        return  # fails at its own size too: the meta device, not the size, is the problem
    # Not "N and larger": a network may need multiples of its window or stride, so say which sizes ran.
    working = [s for s in _PROBE_SIZES if s < native[0] and _runs(twin, info, s, s) is None] + [native[0]]
    raise UsageError(f"{info.name} cannot take {height}x{width} images ({error}); of the sizes tried it runs at "
                     f"{', '.join(map(str, working))} (pretrained at {native[0]}x{native[1]}); set {SIZE_FLAG} "
                     "to one of them")


def _meta_twin(info: ZooInfo) -> nn.Module | None:
    source, arch = split_name(info.name)
    try:
        with torch.device("meta"):
            twin, _ = SOURCES[source].create(arch, info.num_classes, info.in_chans, False, info.drop_path)
    except Exception:  # some constructors read tensor values (.item()), which the meta device cannot give
        return None
    return twin.eval()


def _runs(twin: nn.Module, info: ZooInfo, height: int, width: int) -> str | None:
    """None if one forward of a (1, C, height, width) meta batch works, else the error's first line."""
    try:
        with torch.no_grad():
            twin(torch.empty(1, info.network_in_chans, height, width, device="meta"))
    except Exception as err:  # any failure means this size does not go through; the caller decides what it shows
        return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return None


@lru_cache(maxsize=1)
def _torchvision_all() -> frozenset[str]:
    import torchvision.models

    return frozenset(torchvision.models.list_models(module=torchvision.models))
