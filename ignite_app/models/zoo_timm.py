"""timm's networks: built by ``timm.create_model`` with the head, channels and drop-path rate the app asks for.

timm does the channel adaptation itself: ``in_chans=1`` builds a 1-channel first convolution, and with pretrained
weights it sums their three input channels into it. Its pretrained weights are loaded by timm's own loader (its
per-model key conversions included) from the cached file that ``pretrained.fetch`` found or downloaded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from ignite_app.errors import UsageError

from ignite_app.models import pretrained as hub
from ignite_app.models.zoo_info import PretrainedConfig, ZooInfo

# Architectures timm lists that the app cannot drive, with the reason; found by sweep.py over timm 1.0.31.
_ENCODER = "an image encoder for a language model: it has no classifier head (no get_classifier)"
REFUSED: dict[str, str] = {name: _ENCODER for name in (
    "deepseek_vit_412m_enc", "gemma4_vit_167m_enc", "gemma4_vit_570m_enc", "mobilenetv5_300m_enc",
    "qwen3_vit_88m_enc", "qwen3_vit_306m_enc", "qwen3_vit_416m_enc")}


def names() -> list[str]:
    """timm's architecture names (no pretrained tags), those in :data:`REFUSED` left out."""
    import timm

    return [n for n in timm.list_models() if n not in REFUSED]


def static_info(arch: str, num_classes: int, in_chans: int, drop_path: float | None) -> ZooInfo:
    """What :func:`create` will report about ``timm:arch``, from timm's pretrained configuration, without building
    it (``head`` left empty).

    Raises:
        UsageError: channels the network cannot take.
    """
    name = f"timm:{arch}"
    cfg = timm_cfg(arch)
    # timm adapts the layers named first_conv to in_chans; a network without one (csatv2: a DCT stem on RGB)
    # takes 3 channels, and a 1-channel image is repeated instead.
    repeat = in_chans != 3 and not cfg.get("first_conv")
    if repeat and in_chans != 1:
        raise UsageError(f"{name} takes 3-channel images (1-channel ones are repeated), got {in_chans} channels; "
                         "convert the images to RGB or grayscale")
    size = tuple(cfg["input_size"][-2:])
    minimum = tuple(cfg["min_input_size"][-2:]) if cfg.get("min_input_size") else None
    first_conv = cfg.get("first_conv") or ()
    return ZooInfo(name=name, source="timm", num_classes=num_classes, in_chans=in_chans, head=(),
                   config=pretrained_config(cfg, 3 if repeat else in_chans),
                   channels="repeat" if repeat else "native" if in_chans == 3 else "timm_in_chans",
                   min_size=None if cfg.get("fixed_input_size") else minimum,
                   fixed_size=size if cfg.get("fixed_input_size") else None, drop_path=drop_path,
                   first_conv=(first_conv,) if isinstance(first_conv, str) else tuple(first_conv))


def timm_cfg(arch: str) -> dict[str, Any]:
    """timm's default pretrained configuration of ``arch`` as a dict (what ``create_model`` gives the network)."""
    import timm

    cfg = timm.get_pretrained_cfg(arch)
    return cfg.to_dict() if cfg is not None else timm.models.PretrainedCfg().to_dict()


def weights_source(arch: str) -> hub.WeightsSource:
    """Where timm's ``pretrained=True`` would load the architecture's default weights from.

    Raises:
        UsageError: timm has no pretrained weights for it.
    """
    source = hub.timm_source(timm_cfg(arch))
    if source is None:
        raise UsageError(f"timm:{arch} has no pretrained weights in timm; leave out --pretrained or pass a local "
                         "file with --weights FILE")
    return source


def create(arch: str, num_classes: int, in_chans: int, pretrained: bool,
           drop_path: float | None) -> tuple[nn.Module, ZooInfo]:
    """Build ``timm:arch`` for ``num_classes`` classes; see ``zoo.create_network``."""
    info = static_info(arch, num_classes, in_chans, drop_path)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": info.network_in_chans}
    if drop_path is not None:
        kwargs["drop_path_rate"] = drop_path
    path = None
    if pretrained:
        path = hub.fetch(weights_source(arch), info.name)
        # The "file" entry makes timm load this file in place of its own download (source "" keeps it from
        # preferring the hub); timm still converts keys, adapts the first conv and drops the 1000-class head.
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path), "source": ""})
    network = _create_model(info.name, arch, kwargs, drop_path)
    if drop_path and not has_drop_path(network):
        raise UsageError(f"{info.name} accepts drop_path_rate but has no drop-path layers, so --drop-path "
                         f"{drop_path:g} would do nothing; leave --drop-path out")
    info = replace(info, head=head_names(network))
    if path is not None:
        info = _with_pretrained(info, path, network.pretrained_cfg.get("num_classes"))
    return network, info


def _create_model(name: str, arch: str, kwargs: dict[str, Any], drop_path: float | None) -> nn.Module:
    import timm

    try:
        return timm.create_model(arch, **kwargs)
    except TypeError as err:
        if drop_path is not None and "drop_path_rate" in str(err):
            raise UsageError(f"{name} has no stochastic depth (drop_path_rate), so --drop-path {drop_path:g} "
                             "cannot apply; leave --drop-path out") from err
        raise
    except RuntimeError as err:
        if "file" in kwargs.get("pretrained_cfg_overlay", {}):
            raise UsageError(f"the cached pretrained weights of {name} "
                             f"({kwargs['pretrained_cfg_overlay']['file']}) do not load: {err}; delete the file "
                             "to download it again, or pass --weights FILE") from err
        raise


def has_drop_path(network: nn.Module) -> bool:
    """Whether some layer drops residual paths at a non-zero rate (timm's DropPath)."""
    from timm.layers import DropPath

    return any(isinstance(m, DropPath) and m.drop_prob > 0 for m in network.modules())


def head_names(network: nn.Module) -> tuple[str, ...]:
    """Parameter names of ``get_classifier()`` and of the modules the pretrained config calls its classifier.

    ``get_classifier()`` is a tuple for distilled networks (both heads); VOLO's config adds ``aux_head``, a
    second class-dependent layer that ``get_classifier()`` leaves out but the logits include.
    """
    heads = network.get_classifier()
    modules = list(heads) if isinstance(heads, tuple) else [heads]
    named = network.pretrained_cfg.get("classifier") or ()
    for path in (named,) if isinstance(named, str) else named:
        try:
            modules.append(network.get_submodule(path))
        except AttributeError:
            continue  # a config entry for another variant of the architecture
    # By parameter identity, in the network's order: get_classifier() and the config may name nested modules.
    wanted = {id(p) for module in modules for p in module.parameters()}
    names = tuple(name for name, p in network.named_parameters() if id(p) in wanted)
    if not names:
        raise TypeError(f"{type(network).__name__}.get_classifier() returned {heads!r}, which has no parameters")
    return names


def pretrained_config(cfg: dict[str, Any], in_chans: int) -> PretrainedConfig:
    """timm's ``resolve_data_config`` of a pretrained configuration, with one mean and std entry per input channel.

    For one channel they are averaged (timm sums the pretrained first layer, which expects the same normalised
    value in all three channels); for more they repeat, as timm repeats the first layer's weights.
    """
    from timm.data import resolve_data_config

    data = resolve_data_config(pretrained_cfg=cfg)
    mean, std = tuple(data["mean"]), tuple(data["std"])
    if in_chans == 1:
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    elif in_chans != len(mean):
        mean, std = tuple(mean[i % len(mean)] for i in range(in_chans)), tuple(std[i % len(std)]
                                                                               for i in range(in_chans))
    height, width = data["input_size"][-2:]
    weights = cfg.get("hf_hub_id") or f"{cfg.get('architecture')}.{cfg.get('tag')}"
    return PretrainedConfig(weights=weights, mean=mean, std=std, input_size=(height, width),
                            resize_size=int(height / data["crop_pct"]), crop_pct=float(data["crop_pct"]),
                            interpolation=data["interpolation"])


def _with_pretrained(info: ZooInfo, path: Any, pretrained_classes: int | None) -> ZooInfo:
    summary = f"timm loaded {info.config.weights} from {path}"
    if pretrained_classes != info.num_classes:  # timm drops the head of another class count before loading
        summary += f"; left out (the classes differ: freshly initialised): {', '.join(info.head)}"
    if info.channels == "timm_in_chans":
        summary += f"; first layer adapted to {info.in_chans} channel(s)"
    return replace(info, pretrained=True, weights_file=str(path), load_summary=summary)
