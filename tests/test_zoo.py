"""Names, listing, building, heads, channels, input sizes and drop path of zoo networks."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision.models
from torch import nn

from ignite_app.config import ConfigError, TrainConfig
from ignite_app.errors import UsageError
from ignite_app.registry import MODELS, UnknownName
from ignite_app.models import zoo, zoo_timm
from ignite_app.models.preprocess import ChannelRepeat
from ignite_app.models.zoo_info import registered_info

REGISTERED = ["cnn", "mlp"]


def meta_network(name: str, num_classes: int = 5, in_chans: int = 3, **kwargs):
    """Build on the meta device: no memory, no init cost; enough for structure and shape checks."""
    with torch.device("meta"):
        return zoo.create_network(name, num_classes, in_chans, **kwargs)


def test_list_models_covers_registered_and_both_zoos() -> None:
    names = zoo.list_models(registered=REGISTERED)
    assert names[:2] == ["cnn", "mlp"]
    tv = {n.split(":", 1)[1] for n in names if n.startswith("torchvision:")}
    assert tv == set(torchvision.models.list_models(module=torchvision.models))  # all 80 are driven
    import timm

    timm_names = {n.split(":", 1)[1] for n in names if n.startswith("timm:")}
    assert timm_names == set(timm.list_models()) - set(zoo_timm.REFUSED)
    assert not timm_names & set(zoo_timm.REFUSED)


@pytest.mark.parametrize(("pattern", "expected", "absent"), [
    ("resnet18", ["torchvision:resnet18", "timm:resnet18"], ["timm:resnet18d", "cnn"]),
    ("torchvision:vit_*", ["torchvision:vit_b_16", "torchvision:vit_h_14"], ["timm:vit_base_patch16_224"]),
    ("CN?", ["cnn"], ["mlp"]),
    ("test_vit*", ["timm:test_vit", "timm:test_vit2"], ["timm:test_resnet"]),
])
def test_list_models_filters_by_pattern(pattern: str, expected: list[str], absent: list[str]) -> None:
    names = zoo.list_models(pattern, REGISTERED)
    assert set(expected) <= set(names)
    assert not set(absent) & set(names)


def test_registry_resolves_every_source() -> None:
    assert MODELS.get("torchvision:googlenet") == zoo.ZooModel("torchvision:googlenet")
    assert MODELS.get("timm:test_resnet") == zoo.ZooModel("timm:test_resnet")
    assert "cnn" in MODELS and "timm:anything" in MODELS  # a prefix is enough for membership; get() checks


@pytest.mark.parametrize(("name", "suggested"), [
    ("resnet18", ["torchvision:resnet18", "timm:resnet18"]),
    ("timm:resnt50", ["timm:resnet50", "torchvision:resnet50"]),
    ("cnnn", ["cnn"]),
    ("torchvision:efficientnet_b9", ["torchvision:efficientnet_b0"]),
])
def test_unknown_name_suggests_closest_across_sources(name: str, suggested: list[str]) -> None:
    with pytest.raises(ConfigError, match=rf"--model '{name}' is not a .*\(did you mean .*\).*--list-models") as err:
        TrainConfig(model=name)
    closest = re.findall(r"'([\w:.]+)'", str(err.value).split("did you mean ")[1].split("?)")[0])
    assert set(suggested) <= set(closest)


def test_encoders_without_classifier_are_refused() -> None:
    assert "timm:qwen3_vit_88m_enc" not in zoo.list_models("*_enc")
    with pytest.raises(ConfigError, match="timm:qwen3_vit_88m_enc cannot be used: an image encoder .* no classifier"):
        TrainConfig(model="timm:qwen3_vit_88m_enc")


def test_refused_name_says_why_and_is_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(zoo_timm.REFUSED, "test_nfnet", "returns features, not logits")
    zoo.source_names.cache_clear()
    try:
        assert "timm:test_nfnet" not in zoo.list_models("test_*")
        with pytest.raises(UnknownName, match="timm:test_nfnet cannot be used: returns features, not logits"):
            MODELS.get("timm:test_nfnet")
        with pytest.raises(UsageError, match="cannot be used"):
            zoo.create_network("timm:test_nfnet", 5, 3)
    finally:
        monkeypatch.undo()
        zoo.source_names.cache_clear()


@pytest.mark.parametrize(("name", "head"), [
    ("timm:test_resnet", ("fc.weight", "fc.bias")),
    ("timm:test_vit", ("head.weight", "head.bias")),
    ("timm:test_efficientnet", ("classifier.weight", "classifier.bias")),
    ("timm:test_convnext", ("head.fc.weight", "head.fc.bias")),
])
def test_timm_network_has_head_for_classes_in_train_and_eval(name: str, head: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    net, info = zoo.create_network(name, 7, 3)
    assert info.head == head and info.source == "timm" and info.channels == "native"
    params = dict(net.named_parameters())
    assert params[head[0]].shape[0] == 7
    x = torch.rand(2, 3, *info.config.input_size)
    for train in (True, False):
        out = net.train(train)(x)
        assert isinstance(out, torch.Tensor) and out.shape == (2, 7)


def test_timm_grayscale_builds_a_one_channel_first_layer() -> None:
    net, info = zoo.create_network("timm:test_resnet", 4, 1)
    assert info.channels == "timm_in_chans" and info.repeat_channels is None and info.network_in_chans == 1
    assert net.conv1[0].weight.shape[1] == 1 and info.first_conv == ("conv1.0",)
    assert len(info.config.mean) == 1 and info.config.mean[0] == pytest.approx(0.5)
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 4)


def test_torchvision_resnet18_grayscale_is_repeated_to_three_channels() -> None:
    net, info = zoo.create_network("torchvision:resnet18", 5, 1)
    assert info.head == ("fc.weight", "fc.bias") and net.fc.out_features == 5
    assert info.channels == "repeat" and info.repeat_channels == 3 and net.conv1.in_channels == 3
    cfg = info.config
    assert cfg.weights == "ResNet18_Weights.IMAGENET1K_V1" and cfg.input_size == (224, 224)
    assert cfg.resize_size == 256 and cfg.interpolation == "bilinear" and len(cfg.mean) == 3
    gray = torch.rand(2, 1, 40, 40)
    repeated = ChannelRepeat(info.repeat_channels)(gray)
    assert repeated.shape == (2, 3, 40, 40) and torch.equal(repeated[:, 2], gray[:, 0])
    assert net.eval()(repeated).shape == (2, 5)
    assert ChannelRepeat().state_dict() == {}  # adds no keys to the saved Classifier


def test_channel_repeat_rejects_other_channel_counts() -> None:
    with pytest.raises(ValueError, match=r"takes 1 or 3 channels, got a batch of shape \(2, 2, 4, 4\)"):
        ChannelRepeat()(torch.rand(2, 2, 4, 4))


def test_torchvision_refuses_channel_counts_it_cannot_repeat() -> None:
    with pytest.raises(UsageError, match="takes 3-channel images .* got 4 channels"):
        meta_network("torchvision:resnet18", in_chans=4)


@pytest.mark.parametrize("name", ["torchvision:googlenet", "torchvision:inception_v3"])
def test_aux_logit_networks_return_logits_in_training_mode(name: str) -> None:
    net, info = meta_network(name)
    assert info.head == ("fc.weight", "fc.bias") and info.ignore_prefixes
    out = net.train()(torch.empty(2, 3, 299, 299, device="meta"))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)  # not GoogLeNetOutputs / InceptionOutputs


@pytest.mark.parametrize(("name", "head"), [
    ("torchvision:squeezenet1_1", ("classifier.1.weight", "classifier.1.bias")),
    ("torchvision:vit_b_16", ("heads.head.weight", "heads.head.bias")),
    ("torchvision:efficientnet_b0", ("classifier.1.weight", "classifier.1.bias")),
    ("torchvision:densenet121", ("classifier.weight", "classifier.bias")),
    ("torchvision:swin_t", ("head.weight", "head.bias")),
])
def test_torchvision_head_locator(name: str, head: tuple[str, ...]) -> None:
    net, info = meta_network(name, num_classes=9)
    assert info.head == head
    assert dict(net.named_parameters())[head[0]].shape[0] == 9


def test_fixed_size_network_refuses_other_sizes() -> None:
    _, info = zoo.create_network("timm:test_vit", 5, 3)
    assert info.fixed_size == (160, 160)
    zoo.check_input_size(info, 160)
    with pytest.raises(UsageError, match="timm:test_vit takes 160x160 images only, got 32x32; set --image-size 160"):
        zoo.check_input_size(info, 32)


def test_declared_min_size_is_enforced() -> None:
    _, info = meta_network("torchvision:squeezenet1_1")
    assert info.min_size == (17, 17)
    zoo.check_input_size(info, 17)
    with pytest.raises(UsageError, match=r"takes images of at least 17x17, got 8x8; set --image-size 17 or more"):
        zoo.check_input_size(info, 8)


def test_probe_refuses_a_size_the_layers_reduce_to_nothing() -> None:
    _, info = zoo.create_network("timm:test_convnext", 5, 3)
    assert info.min_size is None and info.fixed_size is None  # nothing declared: only the probe can tell
    zoo.check_input_size(info, 32)
    zoo.check_input_size(info, (48, 64))
    with pytest.raises(UsageError, match=r"cannot take 8x8 images \(.*Kernel size can't be greater.*\); of the "
                                         r"sizes tried it runs at 32, 64, 96, 128, 160 \(pretrained at 160x160\); "
                                         r"set --image-size to one of them"):
        zoo.check_input_size(info, 8)
    zoo.check_input_size(info, 8, probe=False)  # declared limits only


@pytest.mark.parametrize("name", ["torchvision:convnext_tiny", "torchvision:efficientnet_b0",
                                  "torchvision:swin_t", "torchvision:maxvit_t"])
def test_torchvision_drop_path_sets_stochastic_depth(name: str) -> None:
    """Swin and MaxViT builders fix their rate (0.2): their layers are rescaled, keeping the linear schedule."""
    default = [m.p for m in meta_network(name)[0].modules() if type(m).__name__ == "StochasticDepth"]
    net, info = meta_network(name, drop_path=0.3)
    rates = [m.p for m in net.modules() if type(m).__name__ == "StochasticDepth"]
    assert info.drop_path == 0.3 and max(rates) == pytest.approx(0.3, abs=0.03) and min(rates) >= 0
    assert rates == pytest.approx([p * max(rates) / max(default) for p in default])  # same schedule, scaled


def test_timm_drop_path_sets_drop_path_layers() -> None:
    from timm.layers import DropPath

    net, _ = zoo.create_network("timm:test_efficientnet", 5, 3, drop_path=0.2)
    assert max(m.drop_prob for m in net.modules() if isinstance(m, DropPath)) == pytest.approx(0.2, abs=0.05)


@pytest.mark.parametrize("name", ["torchvision:resnet18", "torchvision:vit_b_16"])
def test_drop_path_refused_without_stochastic_depth(name: str) -> None:
    with pytest.raises(UsageError, match=rf"{name} has no stochastic depth, so --drop-path 0.1 cannot apply"):
        meta_network(name, drop_path=0.1)


@pytest.mark.parametrize("name", ["timm:vgg11", "timm:densenet121"])
def test_timm_drop_path_refused_without_stochastic_depth(name: str) -> None:
    with pytest.raises(UsageError, match=rf"{name} has no stochastic depth \(drop_path_rate\), so --drop-path 0.1"):
        meta_network(name, drop_path=0.1)


def test_timm_network_without_adaptable_first_layer_repeats_grayscale() -> None:
    """csatv2's DCT stem takes RGB and its config names no first_conv for timm to adapt."""
    net, info = meta_network("timm:csatv2", in_chans=1)
    assert info.channels == "repeat" and info.network_in_chans == 3 and len(info.config.mean) == 3
    assert net.train()(torch.empty(2, 3, 512, 512, device="meta")).shape == (2, 5)
    with pytest.raises(UsageError, match="timm:csatv2 takes 3-channel images .* got 4 channels"):
        meta_network("timm:csatv2", in_chans=4)


def test_timm_mlp_head_is_listed_once() -> None:
    """get_classifier() is head.fc (an MLP), the config names head.fc.fc2: each parameter appears once."""
    _, info = meta_network("timm:caformer_s18")
    assert info.head == ("head.fc.fc1.weight", "head.fc.fc1.bias", "head.fc.norm.weight", "head.fc.norm.bias",
                         "head.fc.fc2.weight", "head.fc.fc2.bias")


def test_timm_head_includes_class_dependent_aux_head() -> None:
    """VOLO adds aux_head's class scores to the logits; get_classifier() names only head."""
    _, info = meta_network("timm:volo_d1_224")
    assert set(info.head) == {"head.weight", "head.bias", "aux_head.weight", "aux_head.bias"}


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"name": "cnn"}, ValueError, "build torchvision:NAME and timm:NAME networks, got 'cnn'"),
    ({"num_classes": 1}, ValueError, "at least 2 classes, got num_classes=1"),
    ({"in_chans": 0}, ValueError, "in_chans must be a positive int, got 0"),
    ({"drop_path": 1.5}, UsageError, r"--drop-path must be in \[0, 1\), got 1.5"),
])
def test_create_network_validates_arguments(kwargs: dict, error: type, match: str) -> None:
    args = {"name": "timm:test_resnet", "num_classes": 5, "in_chans": 3, **kwargs}
    with pytest.raises(error, match=match):
        zoo.create_network(**args)


def test_rebuild_without_pretrained_has_the_same_architecture() -> None:
    """vit_h_14's default weights are at 518: the class's default 224 would not fit a checkpoint of them."""
    net, info = meta_network("torchvision:vit_h_14")
    assert info.fixed_size == (518, 518) and net.image_size == 518


def test_registered_network_info_takes_the_last_layer_as_head() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 3))
    info = registered_info("cnn", net, num_classes=3, in_chans=1)
    assert info.head == ("4.weight", "4.bias") and info.config is None
    with pytest.raises(ValueError, match="no Linear or Conv2d layer with 10 outputs"):
        registered_info("cnn", net, num_classes=10, in_chans=1)
