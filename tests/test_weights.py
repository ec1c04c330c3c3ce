"""--weights FILE: plain state dicts, safetensors, app checkpoints; another class count; files that do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torchvision.models
from safetensors.torch import save_file
from torch import nn

from ignite_app.errors import UsageError
from ignite_app.models import zoo
from ignite_app.models.weights import load_weights, read_state_dict
from ignite_app.models.zoo_info import registered_info


class Classifier(nn.Module):
    """The saved model of the app after the restructure: preprocess buffers, then the network."""

    def __init__(self, network: nn.Module, channels: int) -> None:
        super().__init__()
        self.preprocess = nn.Module()
        self.preprocess.register_buffer("mean", torch.full((channels,), 0.5))
        self.preprocess.register_buffer("std", torch.full((channels,), 0.25))
        self.network = network


def assert_backbone_loaded(net: nn.Module, saved: dict[str, torch.Tensor], head: tuple[str, ...]) -> None:
    got = net.state_dict()
    backbone = [k for k in got if k not in head]
    assert backbone and all(torch.equal(got[k], saved[k]) for k in backbone)


def test_torchvision_resnet18_state_dict_with_another_class_count(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = torchvision.models.resnet18(num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    net, info = zoo.create_network("torchvision:resnet18", 3, 3)
    fresh_head = net.fc.weight.detach().clone()
    report = load_weights(net, path, info)
    assert_backbone_loaded(net, source.state_dict(), info.head)
    assert net.fc.weight.shape == (3, 512) and torch.equal(net.fc.weight, fresh_head)  # untouched
    assert report.loaded == 120 and report.left_out == ("fc.weight", "fc.bias")
    assert report.summary() == (f"loaded 120 tensors from {path}; left out (the classes differ: freshly "
                                "initialised): fc.weight, fc.bias")


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".safetensors"])
def test_timm_test_resnet_file_formats(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=1000)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    net, info = zoo.create_network("timm:test_resnet", 4, 3)
    report = load_weights(net, path, info)
    assert_backbone_loaded(net, source.state_dict(), info.head)
    assert net.fc.weight.shape[0] == 4 and report.left_out == ("fc.weight", "fc.bias")


def test_same_class_count_loads_the_head_too(tmp_path: Path) -> None:
    source, _ = zoo.create_network("timm:test_vit", 4, 3)
    path = tmp_path / "vit.safetensors"
    save_file(source.state_dict(), str(path))
    net, info = zoo.create_network("timm:test_vit", 4, 3)
    report = load_weights(net, path, info)
    assert report.left_out == () and report.loaded == len(source.state_dict())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in source.state_dict().items())


def test_keep_head_false_leaves_a_fitting_head_fresh(tmp_path: Path) -> None:
    """Fine-tuning on other classes, as many as before: the old classifier is no starting point."""
    source, _ = zoo.create_network("timm:test_resnet", 5, 3)
    torch.save(source.state_dict(), tmp_path / "other_classes.pth")
    net, info = zoo.create_network("timm:test_resnet", 5, 3)
    fresh = net.fc.weight.detach().clone()
    report = load_weights(net, tmp_path / "other_classes.pth", info, keep_head=False)
    assert report.left_out == info.head and torch.equal(net.fc.weight, fresh)
    assert_backbone_loaded(net, source.state_dict(), info.head)


@pytest.mark.parametrize(("file_name", "key", "ddp"), [
    ("best_model.pt", "state_dict", False),
    ("training_3.pt", "model", True),
])
def test_app_checkpoint_takes_the_network_tensors(tmp_path: Path, file_name: str, key: str, ddp: bool) -> None:
    torch.manual_seed(2)
    network, _ = zoo.create_network("timm:test_efficientnet", 6, 1)
    state = Classifier(network, channels=1).state_dict()
    if ddp:
        state = {f"module.{k}": v for k, v in state.items()}
    checkpoint = {key: state, "trainer": {"epoch": 3, "iteration": 120}, "optimizer": {"state": {}}}
    torch.save(checkpoint, tmp_path / file_name)
    net, info = zoo.create_network("timm:test_efficientnet", 2, 1)
    report = load_weights(net, tmp_path / file_name, info)
    assert_backbone_loaded(net, network.state_dict(), info.head)
    assert report.left_out == info.head and not any(k.startswith("preprocess") for k in net.state_dict())


def test_three_channel_file_into_one_channel_timm_network_adapts_first_conv(tmp_path: Path) -> None:
    source = timm.create_model("test_resnet", num_classes=5)
    torch.save(source.state_dict(), tmp_path / "rgb.pth")
    net, info = zoo.create_network("timm:test_resnet", 5, 1)
    report = load_weights(net, tmp_path / "rgb.pth", info)
    assert report.adapted == ("conv1.0.weight",)
    assert torch.allclose(net.conv1[0].weight, source.conv1[0].weight.sum(dim=1, keepdim=True))


def test_file_of_another_architecture_is_refused_with_names_and_shapes(tmp_path: Path) -> None:
    torch.save(timm.create_model("test_resnet", num_classes=5).state_dict(), tmp_path / "resnet.pth")
    net, info = zoo.create_network("timm:test_efficientnet", 5, 3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(UsageError, match=r"does not fit timm:test_efficientnet: \d+ tensors outside the classifier "
                                         r"head differ: conv_stem.weight: missing from the file, network "
                                         r"\(\d+, 3, 3, 3\);.*and \d+ more. Pass the --model"):
        load_weights(net, tmp_path / "resnet.pth", info)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing half-loaded


def test_shape_mismatch_outside_head_is_refused(tmp_path: Path) -> None:
    source = torchvision.models.resnet18(num_classes=5)
    state = source.state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with torch.device("meta"):
        net, info = zoo.create_network("torchvision:resnet18", 5, 3)
    with pytest.raises(UsageError, match=r"1 tensors outside the classifier head differ: layer1.0.conv1.weight: "
                                         r"file \(64, 64, 1, 1\), network \(64, 64, 3, 3\)"):
        load_weights(net, tmp_path / "bad.pth", info)


def test_unexpected_tensors_are_refused(tmp_path: Path) -> None:
    state = timm.create_model("test_resnet", num_classes=5).state_dict()
    state["extra.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "extra.pth")
    net, info = zoo.create_network("timm:test_resnet", 5, 3)
    with pytest.raises(UsageError, match=r"extra.weight: in the file \(2, 2\), not in the network"):
        load_weights(net, tmp_path / "extra.pth", info)


def test_pickled_objects_are_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "config": Path("/etc")}, path)  # a non-tensor object
    net, info = zoo.create_network("timm:test_resnet", 5, 3)
    with pytest.raises(UsageError, match="cannot be read as a state dict with weights_only=True"):
        load_weights(net, path, info)


@pytest.mark.parametrize(("content", "match"), [
    (b"not a zip or a pickle", "cannot be read as a state dict"),
    ([1, 2, 3], "holds list, expected a state dict"),
    ({"epoch": 3}, "holds no tensors"),
])
def test_unreadable_files_are_refused(tmp_path: Path, content: object, match: str) -> None:
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(UsageError, match=match):
        read_state_dict(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--weights .*nope.pt: no such file"):
        read_state_dict(tmp_path / "nope.pt")


def test_auxiliary_heads_of_a_torchvision_file_are_ignored(tmp_path: Path) -> None:
    with torch.device("meta"):
        source = torchvision.models.googlenet(num_classes=1000, aux_logits=True, init_weights=False)
        net, info = zoo.create_network("torchvision:googlenet", 5, 3)
    state = {k: torch.zeros(v.shape) for k, v in source.state_dict().items()}
    torch.save(state, tmp_path / "googlenet.pth")
    net = net.to_empty(device="cpu")
    report = load_weights(net, tmp_path / "googlenet.pth", info)
    assert report.ignored and all(k.startswith(("aux1.", "aux2.")) for k in report.ignored)
    assert report.left_out == ("fc.weight", "fc.bias")


def test_module_versions_reach_the_modules_loaders(tmp_path: Path) -> None:
    """MNASNet's loader refuses a state dict without its version metadata (the sweep found it)."""
    torch.save(torchvision.models.mnasnet0_5(num_classes=10).state_dict(), tmp_path / "mnasnet.pth")
    net, info = zoo.create_network("torchvision:mnasnet0_5", 4, 3)
    assert load_weights(net, tmp_path / "mnasnet.pth", info).left_out == info.head


def test_registered_network_loads_with_another_class_count(tmp_path: Path) -> None:
    def cnn(classes: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, classes))

    source = cnn(10)
    torch.save(Classifier(source, 1).state_dict(), tmp_path / "best_model.pt")
    net = cnn(5)
    report = load_weights(net, tmp_path / "best_model.pt", registered_info("cnn", net, 5, 1))
    assert report.loaded == 2 and report.left_out == ("3.weight", "3.bias")
    assert torch.equal(net[0].weight, source[0].weight)
