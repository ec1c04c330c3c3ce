"""torchvision's classification networks: a family table (head, stochastic depth, input size), build, pretrained.

Every network is built with the constructor arguments its default pretrained weights imply (ViT's image size,
GoogLeNet's input transform...), whether or not those weights are loaded, so a checkpoint always fits a rebuild.
Verified for all 80 classification models of torchvision 0.29 by ``sweep.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ignite_app.errors import UsageError

from ignite_app.models import pretrained as hub
from ignite_app.models.weights import load_state_into
from ignite_app.models.zoo_info import PretrainedConfig, ZooInfo

# Built without auxiliary classifiers, so the forward returns logits in training mode too (their default returns
# a namedtuple there); the input transform the pretrained weights expect is kept on for every build.
_NO_AUX = {"aux_logits": False, "transform_input": True, "init_weights": True}


@dataclass(frozen=True)
class Family:
    """How to drive one family of torchvision networks."""

    pattern: str                          # regular expression matched at the start of the architecture name
    head: str                             # module path of the classifier; "-1" is the last child
    drop_path: str | None = None          # "kwarg": the builder takes stochastic_depth_prob; "rescale": its
                                          # builder fixes the rate, so the StochasticDepth layers are rescaled
    size_kwarg: str | None = None         # the builder fixes the input size through this argument
    kwargs: dict[str, Any] = field(default_factory=dict)
    aux: tuple[str, ...] = ()             # pretrained-file keys of the auxiliary classifiers not built here
    rename: tuple[str, str] | None = None # (pattern, replacement) for key names of older pretrained files


FAMILIES = (
    Family(r"resnet|resnext|wide_resnet|regnet_|shufflenet_v2_", "fc"),
    Family(r"googlenet$", "fc", kwargs=_NO_AUX, aux=("aux1.", "aux2.")),
    Family(r"inception_v3$", "fc", kwargs=_NO_AUX, aux=("AuxLogits.",)),
    Family(r"alexnet$|vgg|mobilenet_v2$|mobilenet_v3_|mnasnet", "classifier.-1"),
    Family(r"efficientnet_|convnext_", "classifier.-1", drop_path="kwarg"),
    Family(r"maxvit_", "classifier.-1", drop_path="rescale", size_kwarg="input_size"),
    # DenseNet's files predate a module rename: "denselayer1.norm.1.weight" is now "denselayer1.norm1.weight".
    Family(r"densenet", "classifier", rename=(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.\w+)$", r"\1\2")),
    Family(r"squeezenet", "classifier.1"),   # a 1x1 convolution to num_classes channels, then ReLU and pooling
    Family(r"swin_", "head", drop_path="rescale"),
    Family(r"vit_", "heads.head", size_kwarg="image_size"),
)


def family(arch: str) -> Family | None:
    """The family entry of ``arch``, or None for an architecture the table does not know (not offered)."""
    return next((f for f in FAMILIES if re.match(f.pattern, arch)), None)


def names() -> list[str]:
    """The classification architectures torchvision offers that the family table drives."""
    import torchvision.models

    return [n for n in torchvision.models.list_models(module=torchvision.models) if family(n) is not None]


def default_weights(arch: str) -> Any:
    """The architecture's default pretrained weights enum member (``ResNet18_Weights.IMAGENET1K_V1``)."""
    import torchvision.models

    return torchvision.models.get_model_weights(arch).DEFAULT


def static_info(arch: str, num_classes: int, in_chans: int, drop_path: float | None) -> ZooInfo:
    """What :func:`create` will report about ``torchvision:arch``, without building it (``head`` left empty).

    Raises:
        UsageError: channels the network cannot take, or ``drop_path`` for a family without stochastic depth.
    """
    name, fam, weights = f"torchvision:{arch}", family(arch), default_weights(arch)
    if in_chans not in (1, 3):
        raise UsageError(f"{name} takes 3-channel images (1-channel ones are repeated), got "
                         f"{in_chans} channels; convert the images to RGB or grayscale")
    if drop_path is not None and fam.drop_path is None:
        raise UsageError(f"{name} has no stochastic depth, so --drop-path {drop_path:g} cannot "
                         "apply; leave --drop-path out, or pick an efficientnet, convnext, swin or maxvit")
    minimum = tuple(weights.meta["min_size"])
    return ZooInfo(name=name, source="torchvision", num_classes=num_classes, in_chans=in_chans, head=(),
                   config=pretrained_config(weights), channels="repeat" if in_chans == 1 else "native",
                   min_size=None if fam.size_kwarg else minimum, fixed_size=minimum if fam.size_kwarg else None,
                   drop_path=drop_path, ignore_prefixes=fam.aux)


def weights_source(arch: str) -> hub.WeightsSource:
    """Where the architecture's default pretrained weights come from (a URL cached by torch.hub)."""
    return hub.WeightsSource("url", default_weights(arch).url)


def create(arch: str, num_classes: int, in_chans: int, pretrained: bool,
           drop_path: float | None) -> tuple[nn.Module, ZooInfo]:
    """Build ``torchvision:arch`` for ``num_classes`` classes; see ``zoo.create_network``."""
    import torchvision.models

    info, fam, weights = static_info(arch, num_classes, in_chans, drop_path), family(arch), default_weights(arch)
    kwargs = {**fam.kwargs, **_size_kwargs(fam, weights), "num_classes": num_classes}
    if drop_path is not None and fam.drop_path == "kwarg":
        kwargs["stochastic_depth_prob"] = drop_path
    # Before building: a refusal (offline, no cached copy) comes at once, not after minutes of initialisation.
    path = hub.fetch(weights_source(arch), info.name) if pretrained else None
    network = torchvision.models.get_model(arch, weights=None, **kwargs)
    if drop_path is not None and fam.drop_path == "rescale":
        rescale_stochastic_depth(network, drop_path)
    info = replace(info, head=head_names(network, fam.head))
    if path is not None:
        info = _load_pretrained(network, info, fam, path)
    return network, info


def rescale_stochastic_depth(network: nn.Module, rate: float) -> None:
    """Scale the StochasticDepth layers' rates so that the largest is ``rate``.

    Swin and MaxViT's builders pass their own stochastic_depth_prob (0.2 to 0.5) and refuse another; their
    rates rise linearly from 0 at the first block to that value at the last, so scaling keeps the schedule.
    """
    from torchvision.ops import StochasticDepth

    layers = [m for m in network.modules() if isinstance(m, StochasticDepth)]
    top = max(m.p for m in layers)
    for m in layers:
        m.p = m.p * rate / top


def _size_kwargs(fam: Family, weights: Any) -> dict[str, Any]:
    # ViT and MaxViT bake the input size into their layers; their builders set it from the weights when loading
    # them, so it is set the same way when not (vit_h_14's default weights are at 518, not the class's 224).
    if fam.size_kwarg == "image_size":
        return {"image_size": weights.meta["min_size"][0]}
    if fam.size_kwarg == "input_size":
        return {"input_size": tuple(weights.meta["min_size"])}
    return {}


def head_names(network: nn.Module, path: str) -> tuple[str, ...]:
    """Parameter names of the module at ``path`` ("classifier.-1": the last child of ``classifier``)."""
    module, resolved = network, []
    for part in path.split("."):
        if part.lstrip("-").isdigit():
            children = list(module.named_children())
            name, module = children[int(part)]
        else:
            name, module = part, getattr(module, part)
        resolved.append(name)
    prefix = ".".join(resolved)
    return tuple(f"{prefix}.{p}" for p, _ in module.named_parameters())


def pretrained_config(weights: Any) -> PretrainedConfig:
    """Mean, std, sizes and interpolation of the weights' own ``transforms()`` (ImageClassification)."""
    t = weights.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    return PretrainedConfig(weights=f"{type(weights).__name__}.{weights.name}", mean=tuple(t.mean),
                            std=tuple(t.std), input_size=(crop, crop), resize_size=resize, crop_pct=crop / resize,
                            interpolation=t.interpolation.value)


def _load_pretrained(network: nn.Module, info: ZooInfo, fam: Family, path: Path) -> ZooInfo:
    """Load the cached default weights at ``path`` into ``network``, all but its head (built for another class
    count).

    The file is read here with ``weights_only=True`` rather than through torchvision's builder, whose
    ``torch.hub.load_state_dict_from_url`` unpickles without that restriction; the builder's fix-ups are the
    family's ``rename`` and ``aux`` entries.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: unpickling and zip errors share no base class
        raise UsageError(f"the cached pretrained weights of {info.name} ({path}) cannot be read "
                         f"({type(err).__name__}); delete the file to download it again, or pass --weights FILE"
                         ) from err
    if fam.rename:
        pattern = re.compile(fam.rename[0])
        state = {pattern.sub(fam.rename[1], k): v for k, v in state.items()}
    report = load_state_into(network, state, info, origin=f"{info.config.weights} ({path})")
    return replace(info, pretrained=True, weights_file=str(path), load_summary=report.summary())
